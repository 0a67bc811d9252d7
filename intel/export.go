package intel

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/xarfd/xarfd/config"
)

// Export file names in intel.export.dir (rbldnsd dataset types).
const (
	FileIP4 = "ip4set"
	FileIP6 = "ip6tset"
	FileDom = "dnset"
)

// LookupBase is the base URL of the lookup links in TXT answers.
func LookupBase(cfg *config.Config) string {
	if cfg.Intel.LookupURL != "" {
		return strings.TrimSuffix(cfg.Intel.LookupURL, "/")
	}
	return "http://" + cfg.HTTP.Listen
}

// Export writes the rbldnsd data files of what is listed now into dir,
// each through a temporary file renamed over the old one, so that
// rbldnsd never reads half a file. rbldnsd answers from them as our DNS
// server does (the interop test compares both), with two limits of its
// formats: ip6tset lists /64s under one TXT template, and cannot hold
// the IPv6 test entry (a /128).
func (s *Service) Export(dir string) error {
	base := LookupBase(s.cfg)
	soa := func() string {
		return fmt.Sprintf("$SOA %d %s. hostmaster.%s. 0 3600 600 86400 %d\n$NS %d %s.\n",
			answerTTL, zoneName(s.cfg.Hostname), zoneName(s.cfg.Intel.IPZone), negativeTTL, answerTTL, zoneName(s.cfg.Hostname))
	}
	type entry struct {
		value string
		l     Listing
	}
	now := s.now()
	s.mu.RLock()
	var ip4, dom []entry
	nets := map[netip.Prefix]bool{}
	for v, l := range s.listed[KindIP] {
		if !now.Before(l.Until) {
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			continue
		}
		if a.Is4() {
			ip4 = append(ip4, entry{v, l})
		} else {
			p, _ := a.Prefix(64)
			nets[p] = true
		}
	}
	for v, l := range s.listed[KindDomain] {
		if now.Before(l.Until) {
			dom = append(dom, entry{v, l})
		}
	}
	s.mu.RUnlock()
	sortEntries := func(es []entry) {
		slices.SortFunc(es, func(a, b entry) int { return strings.Compare(a.value, b.value) })
	}
	sortEntries(ip4)
	sortEntries(dom)

	var b bytes.Buffer
	b.WriteString("# xarfd blocklist: listed IPv4 addresses (rbldnsd ip4set)\n")
	b.WriteString(soa())
	fmt.Fprintf(&b, "127.0.0.2 :%s:%s\n", CodeListed, testReason)
	for _, e := range ip4 {
		fmt.Fprintf(&b, "%s :%s:%s\n", e.value, CodeListed, txtSafe(TXTText(e.l.Reason, base, KindIP, e.value)))
	}
	if err := writeAtomic(dir, FileIP4, b.Bytes()); err != nil {
		return err
	}

	b.Reset()
	b.WriteString("# xarfd blocklist: /64 networks of listed IPv6 addresses (rbldnsd ip6tset)\n")
	fmt.Fprintf(&b, ":%s:listed by xarfd; see %s/api/v1/indicators/ip/$\n", CodeListed, base)
	var ps []string
	for p := range nets {
		a := p.Addr().As16()
		ps = append(ps, fmt.Sprintf("%x:%x:%x:%x", uint16(a[0])<<8|uint16(a[1]), uint16(a[2])<<8|uint16(a[3]),
			uint16(a[4])<<8|uint16(a[5]), uint16(a[6])<<8|uint16(a[7])))
	}
	slices.Sort(ps)
	for _, p := range ps {
		b.WriteString(p + "\n")
	}
	if err := writeAtomic(dir, FileIP6, b.Bytes()); err != nil {
		return err
	}

	b.Reset()
	b.WriteString("# xarfd blocklist: listed registrable domains and their subdomains (rbldnsd dnset)\n")
	b.WriteString(soa())
	fmt.Fprintf(&b, "test :%s:%s\n", CodeListed, testReason)
	for _, e := range dom {
		fmt.Fprintf(&b, ".%s :%s:%s\n", e.value, CodeListed, txtSafe(TXTText(e.l.Reason, base, KindDomain, e.value)))
	}
	return writeAtomic(dir, FileDom, b.Bytes())
}

// txtSafe keeps a TXT template from being read as rbldnsd substitutions
// or as more than one line.
func txtSafe(s string) string {
	return strings.NewReplacer("$", "", "\n", " ", "\r", " ").Replace(s)
}

func writeAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("exporting %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("exporting %s: %w", name, err)
	}
	return nil
}
