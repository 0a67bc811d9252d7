// Package config holds xarfd's configuration: the YAML schema, the default of
// every key (written once, in defaults.go, beside its documentation), strict
// decoding that rejects unknown keys, and validation whose errors name the
// file and the key.
//
// Every key is documented in docs/configuration.md (and, generated from
// it, xarfd.yaml(5)); a key added here is added there too.
package config

import (
	"net/netip"
	"time"
)

// Config is the whole configuration of one xarfd process.
type Config struct {
	// Hostname is the name this host gives in the SMTP greeting, in
	// Received and redaction headers, and in outbound Message-IDs.
	Hostname string `yaml:"hostname"`
	// DataDir holds the bbolt database (xarfd.db).
	DataDir string `yaml:"data_dir"`
	// Resolver is the DNS server (host:port) used for DKIM, SPF, contact
	// zones and MX lookups; empty means the system's resolver.
	Resolver string `yaml:"resolver"`
	// Sender is this installation, the XARF "sender" of every report.
	Sender Org `yaml:"sender"`

	SMTP     SMTP      `yaml:"smtp"`
	HTTP     HTTP      `yaml:"http"`
	Channels []Channel `yaml:"channels"`
	Reporter Reporter  `yaml:"reporter"`
	Contacts Contacts  `yaml:"contacts"`
	// OwnNetworks is abuse from our own address space: stored and shown,
	// never reported outside.
	OwnNetworks []Prefix `yaml:"own_networks"`
	// Intel mines indicators from the reports of channels that use intel
	// and publishes them as DNS blocklists (package intel).
	Intel Intel `yaml:"intel"`
	// RetentionOrphaned is how long data of a channel that is stored but
	// no longer configured (removed or renamed) is kept.
	RetentionOrphaned Duration `yaml:"retention_orphaned"`
	Log               Log      `yaml:"log"`
	// Subscribers is own-network handling for channels that use own.
	Subscribers Subscribers `yaml:"subscribers"`
	// Cluster joins this node to others over NATS JetStream; nil = a
	// single node (package cluster).
	Cluster *Cluster `yaml:"cluster,omitempty"`

	// Source is the file the configuration was read from, or "(embedded
	// default)"; it prefixes every error message.
	Source string `yaml:"-"`
	// lines maps key paths ("channels[1].redact.mode") to the line they
	// are on, so that errors found after decoding still name the line.
	lines map[string]int
	// renamed lists the old key names the file still uses, as warnings
	// naming file, line and key.
	renamed []string
}

// Log configures the daemon's own log.
type Log struct {
	// Level is the least severe level written: debug, info, warn or error.
	Level string `yaml:"level"`
}

// Org names an organisation as XARF's reporter and sender objects do.
type Org struct {
	Org     string `yaml:"org"`
	Contact string `yaml:"contact"`
	Domain  string `yaml:"domain"`
}

// SMTP configures the receiving SMTP server.
type SMTP struct {
	Listen []string `yaml:"listen"`
	// TLS enables STARTTLS (RFC 3207) when both files are set.
	TLS TLS `yaml:"tls"`
	// MaxMessageBytes is the SIZE limit (RFC 1870); larger messages get
	// 552 5.3.4.
	MaxMessageBytes int64 `yaml:"max_message_bytes"`
	// MaxRecipients caps RCPT commands per transaction; the next one gets
	// 452 4.5.3 (RFC 5321 section 4.5.3.1.8).
	MaxRecipients int `yaml:"max_recipients"`
	// ReadTimeout is how long a client may stay silent, and the longest
	// pause inside DATA.
	ReadTimeout Duration `yaml:"read_timeout"`
	// WriteTimeout bounds each reply write.
	WriteTimeout Duration `yaml:"write_timeout"`
	// MaxConnections caps concurrent sessions; the next client gets
	// 421 4.7.0 and is disconnected.
	MaxConnections int `yaml:"max_connections"`
	// MaxLineLength caps the length of a command line and of each line of
	// DATA (RFC 5321 allows 1000; real mail is often longer).
	MaxLineLength int `yaml:"max_line_length"`
	// MaxConnectionsPerIP caps concurrent sessions from one IPv4 address
	// or one IPv6 /64; the next gets 421 4.7.0 at connect.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// ReservedConnections are slots beyond MaxConnections that only peers
	// in some channel's accept_from.networks may take, so that a flood
	// from elsewhere cannot lock out the configured feeds.
	ReservedConnections int `yaml:"reserved_connections"`
	// SessionTimeout bounds a whole connection, however busy the client
	// keeps it: a client trickling bytes faster than ReadTimeout is still
	// cut off (421 4.4.2) when it runs out.
	SessionTimeout Duration `yaml:"session_timeout"`
	// MaxInflightBytes is how many bytes of DATA/BDAT all sessions may
	// hold in memory at once; a session that would exceed it waits
	// briefly, then gets 452 4.3.1. 0 = derived from the memory available
	// (see smtpd.InflightBudget).
	MaxInflightBytes int64 `yaml:"max_inflight_bytes"`
	// AuthFile lists "name:hash" lines for the channels' accept_from.users.
	AuthFile string `yaml:"auth_file"`
}

// TLS names a certificate and its key, both PEM.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether a certificate is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// HTTP configures the API listener.
type HTTP struct {
	Listen string `yaml:"listen"`
	// Hostnames are the names clients may use in the Host header besides
	// the listen address, loopback addresses and localhost; any other
	// name is answered 421 (a DNS-rebinding page would send its own).
	Hostnames []string `yaml:"hostnames"`
	// MaxBodyBytes caps every request body; a larger one is answered 413.
	MaxBodyBytes int64   `yaml:"max_body_bytes"`
	Tokens       []Token `yaml:"tokens"`
}

// Token is one bearer token, stored as the sha256 of its value.
type Token struct {
	Name   string   `yaml:"name"`
	SHA256 string   `yaml:"sha256"`
	Scopes []string `yaml:"scopes"`
	// Channels limits the submit scope to these channels; empty = all.
	Channels []string `yaml:"channels"`
}

// Kind is what a channel receives; the YAML and the API write it as its
// string.
type Kind string

// Channel kinds.
const (
	KindARF  Kind = "arf"
	KindTrap Kind = "trap"
)

// Use is what a channel's data may be used for; the YAML and the API
// write it as its string.
type Use string

// Channel uses.
const (
	UseReport Use = "report"
	UseStore  Use = "store"
	// UseIntel: mine indicators (origin IPs, domains, URLs, addresses in
	// the body and Reply-To) and publish blocklists; never a recipient datum.
	UseIntel Use = "intel"
	// UseOwn: reports about own_networks become subscriber cases.
	UseOwn Use = "own"
)

// Channel is one data source with its own rules.
type Channel struct {
	Name string `yaml:"name"`
	// Kind is arf (feedback reports) or trap (spam-trap mail).
	Kind Kind `yaml:"kind"`
	// Addresses routes recipients here: "user@domain" exactly, or
	// "*@domain" for every address of that domain. Matching is
	// case-insensitive.
	Addresses  []string   `yaml:"addresses"`
	AcceptFrom AcceptFrom `yaml:"accept_from"`
	// ReporterOrg is the organisation that observed the abuse, the XARF
	// "reporter" of this channel's reports. The key is not "reporter" so
	// that it cannot be mistaken for the top-level outbound worker.
	ReporterOrg Org `yaml:"reporter_org"`
	// LegacyReporter is reporter_org's old key, still read so that old
	// files keep working: Parse moves it into ReporterOrg, leaves this nil
	// and adds a warning. Never set both.
	LegacyReporter *Org   `yaml:"reporter,omitempty"`
	Redact         Redact `yaml:"redact"`
	// Uses says what the data may be used for: report, store, intel, own.
	Uses     []Use    `yaml:"uses"`
	ReportTo ReportTo `yaml:"report_to"`
	// Retention deletes stored messages and reports older than this.
	Retention Duration `yaml:"retention"`
	// TrustedRelays forward trap mail to us; the origin is the first
	// Received hop outside them.
	TrustedRelays []Prefix `yaml:"trusted_relays"`
}

// Has reports whether the channel's uses include u.
func (c *Channel) Has(u Use) bool {
	for _, x := range c.Uses {
		if x == u {
			return true
		}
	}
	return false
}

// AcceptFrom restricts who may feed a channel; every empty list allows all.
type AcceptFrom struct {
	Networks    []Prefix `yaml:"networks"`
	DKIMDomains []string `yaml:"dkim_domains"`
	Users       []string `yaml:"users"`
}

// Redaction modes.
const (
	RedactToken = "token"
	RedactHMAC  = "hmac"
)

// Redact is a channel's redaction policy.
type Redact struct {
	// Recipients redacts the envelope recipients and every address the
	// message names as a recipient.
	Recipients bool     `yaml:"recipients"`
	Addresses  []string `yaml:"addresses"`
	Domains    []string `yaml:"domains"`
	// LocalParts also redacts the local part of each address on its own.
	LocalParts  bool   `yaml:"local_parts"`
	Mode        string `yaml:"mode"`
	HMACKeyFile string `yaml:"hmac_key_file"`
}

// Enabled reports whether the channel redacts anything.
func (r Redact) Enabled() bool {
	return r.Recipients || len(r.Addresses) > 0 || len(r.Domains) > 0
}

// ReportTo is "origin" or a list of partner addresses.
type ReportTo struct {
	Origin   bool
	Partners []string
}

// Reporter configures outbound abuse reports.
type Reporter struct {
	// Enabled false is a dry run: reports are rendered, never sent.
	Enabled bool   `yaml:"enabled"`
	From    string `yaml:"from"`
	// Format is xarf (XARF v4 over email) or arf (RFC 5965).
	Format            string    `yaml:"format"`
	Smarthost         Smarthost `yaml:"smarthost"`
	DKIM              DKIM      `yaml:"dkim"`
	PerContactPerHour int       `yaml:"per_contact_per_hour"`
	// MaxRecipientsPerReport caps the addresses one looked-up contact
	// gets a report at; the rest are recorded on the outbox entry.
	MaxRecipientsPerReport int   `yaml:"max_recipients_per_report"`
	Retry                  Retry `yaml:"retry"`
	// MaxAge: a complaint whose Arrival-Date is older than this when it
	// arrives is stored but not reported (abuse desks discard stale
	// reports).
	MaxAge Duration `yaml:"max_age"`
}

// Smarthost relays outbound reports; empty Address = deliver to MX.
type Smarthost struct {
	Address      string `yaml:"address"`
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// TLS is starttls, implicit (RFC 8314) or none.
	TLS string `yaml:"tls"`
}

// DKIM signs outbound reports when all three keys are set.
type DKIM struct {
	Domain         string `yaml:"domain"`
	Selector       string `yaml:"selector"`
	PrivateKeyFile string `yaml:"private_key_file"`
}

// Retry is the outbound retry schedule: exponential from First, with
// jitter, until GiveUpAfter.
type Retry struct {
	First       Duration `yaml:"first"`
	GiveUpAfter Duration `yaml:"give_up_after"`
}

// Contacts configures abuse-contact lookup.
type Contacts struct {
	Static   []StaticContact `yaml:"static"`
	DNSZones []string        `yaml:"dns_zones"`
	RDAP     RDAP            `yaml:"rdap"`
	CacheTTL Duration        `yaml:"cache_ttl"`
}

// StaticContact maps a network to its abuse address.
type StaticContact struct {
	Network Prefix `yaml:"network"`
	Email   string `yaml:"email"`
}

// RDAP configures registry lookups.
type RDAP struct {
	Enabled bool   `yaml:"enabled"`
	BaseURL string `yaml:"base_url"`
}

// Duration is a time.Duration written as Go duration text ("720h", "60s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Prefix is a network written as CIDR ("192.0.2.0/24") or a single address.
type Prefix struct{ netip.Prefix }

// Intel configures indicator mining and the blocklists (docs/intel.md).
type Intel struct {
	DNS IntelDNS `yaml:"dns"`
	// IPZone serves reversed IPv4 and nibble IPv6 names (RFC 5782).
	IPZone string `yaml:"ip_zone"`
	// DomainZone is a right-hand-side list: <registrable domain>.<zone>.
	DomainZone string `yaml:"domain_zone"`
	// ListAfter is, per XARF evidence source, how many hits within Window
	// list an indicator on their own; a hit weighs 1/ListAfter[source], and
	// an indicator is listed when the weights of its hits add up to 1.
	ListAfter ListAfter `yaml:"list_after"`
	Window    Duration  `yaml:"window"`
	// ExpireAfter delists an indicator this long after its last hit.
	ExpireAfter Duration    `yaml:"expire_after"`
	Allow       IntelAllow  `yaml:"allow"`
	Export      IntelExport `yaml:"export"`
	// LookupURL is the base of the lookup link in TXT answers
	// (<lookup_url>/api/v1/indicators/<kind>/<value>); empty = the HTTP
	// API's own address.
	LookupURL string `yaml:"lookup_url"`
}

// IntelDNS is the blocklist DNS server.
type IntelDNS struct {
	// Listen is served on UDP and TCP; empty = no DNS server.
	Listen []string `yaml:"listen"`
}

// ListAfter holds the weighted-hit thresholds per evidence source.
type ListAfter struct {
	Spamtrap      float64 `yaml:"spamtrap"`
	UserComplaint float64 `yaml:"user_complaint"`
}

// IntelAllow is never listed.
type IntelAllow struct {
	Networks []Prefix `yaml:"networks"`
	// Domains are matched with every subdomain.
	Domains []string `yaml:"domains"`
	// Builtin adds the starter list of big shared senders (webmail
	// providers, URL shorteners, bulk-mail platforms; docs/intel.md).
	Builtin bool `yaml:"builtin"`
}

// IntelExport writes rbldnsd data files.
type IntelExport struct {
	// Dir gets ip4set, ip6tset and dnset files; empty = no export.
	Dir      string   `yaml:"dir"`
	Interval Duration `yaml:"interval"`
}

// IntelChannels reports whether any channel uses intel.
func (c *Config) IntelChannels() bool {
	for i := range c.Channels {
		if c.Channels[i].Has(UseIntel) {
			return true
		}
	}
	return false
}
