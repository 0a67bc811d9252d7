package config

import "net/url"

// Subscribers configures own-network handling (channels with uses: [own]):
// who held an address of own_networks at the time of the abuse, the case
// that collects reports about one subscriber, the notification mail and
// the restrict webhook. See docs/own-networks.md.
type Subscribers struct {
	// StaticFile is CSV "network,subscriber_id,email,name": fixed
	// assignments (business lines, static IPs).
	StaticFile string `yaml:"static_file"`
	// AssignmentsFile is CSV or JSON Lines of leases: ip, optional port
	// range, start, end, subscriber_id, email. It is read again when its
	// modification time changes.
	AssignmentsFile string `yaml:"assignments_file"`
	// LookupURL is the operator's own service: GET ?ip=&port=&time=.
	LookupURL string `yaml:"lookup_url"`
	// LookupTimeout bounds one request to LookupURL.
	LookupTimeout Duration `yaml:"lookup_timeout"`
	// LookupCacheTTL keeps LookupURL's answers (found or not found).
	LookupCacheTTL Duration `yaml:"lookup_cache_ttl"`
	Notify         Notify   `yaml:"notify"`
	Restrict       Restrict `yaml:"restrict"`
}

// Notify configures the mail to a subscriber about their case.
type Notify struct {
	// Enabled false is a dry run: the mail is rendered and recorded on
	// the case, not sent.
	Enabled bool   `yaml:"enabled"`
	From    string `yaml:"from"`
	// TemplateFile replaces the built-in text/template of the mail body.
	TemplateFile string `yaml:"template_file"`
	// MinInterval is the least time between two mails to one subscriber;
	// reports arriving in between are collapsed into the next one.
	MinInterval Duration `yaml:"min_interval"`
}

// Restrict configures the provisioning webhook.
type Restrict struct {
	After   RestrictAfter `yaml:"after"`
	Webhook Webhook       `yaml:"webhook"`
	// Enabled false is a dry run: the call is recorded, not made.
	Enabled bool `yaml:"enabled"`
}

// RestrictAfter is the threshold: a case is restricted when, within
// Window, it has Reports reports or TrapHits trap hits (0 = not this way).
type RestrictAfter struct {
	Reports  int      `yaml:"reports"`
	TrapHits int      `yaml:"trap_hits"`
	Window   Duration `yaml:"window"`
}

// Webhook is the operator's provisioning endpoint.
type Webhook struct {
	URL string `yaml:"url"`
	// SecretFile holds the HMAC-SHA256 key the body is signed with.
	SecretFile string `yaml:"secret_file"`
	// Timeout bounds one call: a hanging endpoint is a failed attempt.
	Timeout Duration `yaml:"timeout"`
	// GiveUpAfter stops retrying a call that never got a 2xx.
	GiveUpAfter Duration `yaml:"give_up_after"`
}

func (c *Config) validateSubscribers(v *validator) {
	s := &c.Subscribers
	if s.LookupURL != "" {
		v.httpURL("subscribers.lookup_url", s.LookupURL)
	}
	if s.LookupTimeout.D() <= 0 {
		v.bad("subscribers.lookup_timeout", "must be positive")
	}
	if s.LookupCacheTTL.D() < 0 {
		v.bad("subscribers.lookup_cache_ttl", "must not be negative")
	}
	n := &s.Notify
	if n.Enabled && n.From == "" {
		v.bad("subscribers.notify.from", "is required when subscribers.notify.enabled is true")
	}
	v.email("subscribers.notify.from", n.From, false)
	if n.MinInterval.D() < 0 {
		v.bad("subscribers.notify.min_interval", "must not be negative")
	}
	r := &s.Restrict
	if r.After.Reports < 0 {
		v.bad("subscribers.restrict.after.reports", "must not be negative")
	}
	if r.After.TrapHits < 0 {
		v.bad("subscribers.restrict.after.trap_hits", "must not be negative")
	}
	if r.After.Window.D() <= 0 {
		v.bad("subscribers.restrict.after.window", "must be positive")
	}
	if r.Webhook.URL != "" {
		v.httpURL("subscribers.restrict.webhook.url", r.Webhook.URL)
	}
	if r.Enabled {
		if r.Webhook.URL == "" {
			v.bad("subscribers.restrict.webhook.url", "is required when subscribers.restrict.enabled is true")
		}
		if r.Webhook.SecretFile == "" {
			v.bad("subscribers.restrict.webhook.secret_file", "is required when subscribers.restrict.enabled is true: calls are signed")
		}
	}
	if r.Webhook.Timeout.D() <= 0 {
		v.bad("subscribers.restrict.webhook.timeout", "must be positive")
	}
	if r.Webhook.GiveUpAfter.D() <= 0 {
		v.bad("subscribers.restrict.webhook.give_up_after", "must be positive")
	}
}

func (v *validator) httpURL(key, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		v.bad(key, "%q: want an http(s) URL", s)
	}
}
