package config

import (
	_ "embed"
	"time"
)

// DefaultYAML is the configuration `xarfd serve` runs on without -config:
// SMTP on 127.0.0.1:2525, HTTP on 127.0.0.1:8025, data in ./xarfd-data, an
// ARF channel for fbl@localhost, a redacting trap channel for
// *@trap.localhost, and the reporter in dry run.
//
//go:embed default.yaml
var DefaultYAML []byte

// The defaults of every key a file may leave out. Each is written here once;
// docs/configuration.md quotes them.
const (
	// DefaultHostname is used when hostname is empty and the system's
	// hostname cannot be read.
	DefaultHostname = "localhost"
	// DefaultDataDir is relative to the working directory.
	DefaultDataDir = "./xarfd-data"
	// DefaultSMTPListen and DefaultHTTPListen are loopback-only so that a
	// fresh install exposes nothing.
	DefaultSMTPListen = "127.0.0.1:2525"
	DefaultHTTPListen = "127.0.0.1:8025"
	// DefaultMaxMessageBytes matches the size most mailbox providers
	// accept (25 MiB); FBL reports embed the whole reported message.
	DefaultMaxMessageBytes = 25 << 20
	// DefaultMaxRecipients: FBL and trap mail rarely has more than a few.
	DefaultMaxRecipients = 50
	// DefaultReadTimeout is shorter than RFC 5321's 5 minutes: feeds are
	// machines, and an idle session holds a connection slot.
	DefaultReadTimeout = 60 * time.Second
	// DefaultWriteTimeout bounds a reply to a client that stopped reading.
	DefaultWriteTimeout = 60 * time.Second
	// DefaultMaxConnections caps sessions (and so memory: each may buffer
	// one message of up to max_message_bytes).
	DefaultMaxConnections = 1000
	// DefaultMaxLineLength is far above RFC 5321's 1000 because reported
	// messages often carry long unwrapped lines; it still bounds the
	// memory one command line can take.
	DefaultMaxLineLength = 64 << 10
	// DefaultMaxConnectionsPerIP lets one host (an IPv4 address, an IPv6
	// /64) take 2% of DefaultMaxConnections: a real MTA rarely opens more
	// than a handful of parallel sessions to one MX, and 200 tricklers from
	// one address cannot crowd everybody else out.
	DefaultMaxConnectionsPerIP = 20
	// DefaultReservedConnections are kept, beyond max_connections, for
	// peers in a channel's accept_from.networks (the feeds the operator
	// named), so that they are served while strangers fill the cap.
	DefaultReservedConnections = 50
	// DefaultSessionTimeout bounds one connection whatever it does: long
	// enough for a few max-size messages on a slow link (25 MiB at
	// 1 Mbit/s takes about 3.5 minutes), short enough that a slot held by
	// a trickler comes back.
	DefaultSessionTimeout = 10 * time.Minute
	// DefaultMaxInflightBytes 0 derives the DATA budget from memory; see
	// smtpd.InflightBudget for the fraction and the floor.
	DefaultMaxInflightBytes = 0
	// InflightMemoryDivisor: the derived DATA budget is the memory
	// available divided by this. A message in flight was measured to
	// cost about 6 times its size in resident memory (scripts/flood-smtp,
	// docs/operations.md), 4 when the soft memory limit xarfd sets
	// holds the garbage collector's headroom back: an eighth keeps what
	// is live at half the memory.
	InflightMemoryDivisor = 8
	// MinInflightBytes is the floor of the derived budget: two messages of
	// DefaultMaxMessageBytes, so a small container still takes large mail.
	// (A smaller budget than max_message_bytes is never derived.)
	MinInflightBytes = 2 * DefaultMaxMessageBytes
	// DefaultHTTPMaxBodyBytes (50 MiB) takes a XARF document whose base64
	// evidence is a maximal message (25 MiB is 33.3 MiB in base64) with
	// room to spare, and bounds what one request can make the daemon
	// hold: the body is held whole while it is processed.
	DefaultHTTPMaxBodyBytes = 50 << 20
	// DefaultConsoleEnabled serves the web console at / of the HTTP
	// listener: it is as closed as the API (tokens, loopback).
	DefaultConsoleEnabled = true
	// DefaultConsoleSessionTTL is a working day and a half: one login a
	// day for a desk, and a stolen cookie dies soon.
	DefaultConsoleSessionTTL = 12 * time.Hour
	// DefaultRetention keeps a channel's data for 30 days.
	DefaultRetention = 720 * time.Hour
	// DefaultRedactMode keeps addresses syntactically valid without
	// revealing anything.
	DefaultRedactMode = RedactToken
	// DefaultReporterFormat is XARF v4 over email.
	DefaultReporterFormat = "xarf"
	// DefaultSmarthostTLS: never send credentials in clear by default.
	DefaultSmarthostTLS = "starttls"
	// DefaultPerContactPerHour limits reports to one abuse desk.
	DefaultPerContactPerHour = 60
	// DefaultMaxRecipientsPerReport: a contact lookup that yields more
	// addresses than this (some RDAP records list dozens) would otherwise
	// send as many copies of every report.
	DefaultMaxRecipientsPerReport = 5
	// DefaultRetryFirst and DefaultGiveUpAfter follow common MTA practice.
	DefaultRetryFirst  = 5 * time.Minute
	DefaultGiveUpAfter = 48 * time.Hour
	// DefaultContactCacheTTL caches abuse-contact lookups for a day.
	DefaultContactCacheTTL = 24 * time.Hour
	// DefaultReporterMaxAge: abuse desks discard reports about incidents
	// older than about a week, and a complaint that old is usually a
	// replay or a backlog.
	DefaultReporterMaxAge = 7 * 24 * time.Hour
	// DefaultRetentionOrphaned keeps the data of a channel removed from
	// the configuration as long as a channel's default retention: a
	// renamed channel loses nothing at once, and nothing is kept forever.
	DefaultRetentionOrphaned = DefaultRetention
	// DefaultLogLevel logs one line per transaction and request, and
	// every problem; debug adds health probes and other chatter.
	DefaultLogLevel = "info"
	// DefaultIntelListAfterSpamtrap: a trap never asked for mail, so one
	// hit is evidence enough (as SpamCop and Spamhaus CSS list on traps).
	DefaultIntelListAfterSpamtrap = 1
	// DefaultIntelListAfterComplaint: a user's "this is spam" is also sent
	// for mail the user asked for, so it takes three.
	DefaultIntelListAfterComplaint = 3
	// DefaultIntelWindow: hits older than a week no longer count.
	DefaultIntelWindow = 168 * time.Hour
	// DefaultIntelExpireAfter is SpamCop's 24 hours for IPs: compromised
	// hosts get cleaned, and dynamic addresses move to someone else.
	DefaultIntelExpireAfter = 24 * time.Hour
	// DefaultIntelExportInterval rewrites the rbldnsd files every minute.
	DefaultIntelExportInterval = time.Minute
	// DefaultIntelAllowBuiltin applies the starter allowlist.
	DefaultIntelAllowBuiltin = true

	// DefaultLookupTimeout bounds one request to subscribers.lookup_url:
	// a provisioning system that does not answer in this time is down.
	DefaultLookupTimeout = 5 * time.Second
	// DefaultLookupCacheTTL keeps an HTTP lookup's answer for a few
	// minutes: a burst of trap hits from one address asks once, and a
	// lease change is seen soon.
	DefaultLookupCacheTTL = 5 * time.Minute
	// DefaultNotifyMinInterval: at most one mail a day to a subscriber,
	// as AbuseIO and most ISPs' abuse desks do.
	DefaultNotifyMinInterval = 24 * time.Hour
	// DefaultRestrictReports, DefaultRestrictTrapHits and
	// DefaultRestrictWindow: 10 complaints or one trap hit in a day. A
	// trap address never asked for mail, so one hit is proof.
	DefaultRestrictReports  = 10
	DefaultRestrictTrapHits = 1
	DefaultRestrictWindow   = 24 * time.Hour
	// DefaultWebhookTimeout bounds one restrict call.
	DefaultWebhookTimeout = 10 * time.Second
	// DefaultWebhookGiveUpAfter matches reporter.retry.give_up_after.
	DefaultWebhookGiveUpAfter = DefaultGiveUpAfter

	// DefaultClusterReplicas: three copies keep the stream writable (a
	// majority of two) while one node is down or being upgraded.
	DefaultClusterReplicas = 3
	// MaxClusterReplicas is NATS JetStream's limit for a stream.
	MaxClusterReplicas = 5
	// DefaultClusterSync is always: the embedded servers fsync a record
	// before acknowledging it, so that 250 keeps meaning "on disk" (on a
	// majority of the replicas) as it does for a single node. default is
	// NATS's own policy (fsync every two minutes): faster, but a power
	// loss of a majority at once can lose what was acknowledged.
	DefaultClusterSync = SyncAlways
	// DefaultClusterPublishTimeout bounds the wait for the stream's
	// acknowledgement: longer than a NATS leader election (a few seconds),
	// far shorter than an SMTP client's wait after DATA (10 minutes).
	DefaultClusterPublishTimeout = 10 * time.Second
	// DefaultClusterClaimLease is how long a claim on outbound work holds
	// without a refresh (cluster.claim_lease): a dead node's reports wait
	// this long before another node takes them over. A quarter of an hour
	// is MinClusterClaimLease with a few minutes to spare.
	DefaultClusterClaimLease = 15 * time.Minute
	// ReporterDataTimeout is how long the reporter waits for a desk's
	// answer to the final dot of DATA (RFC 5321 4.5.3.2.6 asks for 10
	// minutes; reporter/deliver uses it). A claim is refreshed just before
	// the dot and must outlast that wait: once the dot is sent the desk
	// may accept the report at any moment, and a claim that ran out
	// meanwhile would let another node send it a second time.
	ReporterDataTimeout = 10 * time.Minute
	// MinClusterClaimLease is ReporterDataTimeout and a minute for
	// writing the dot and recording the outcome in the claim bucket (a
	// JetStream write may wait out a leader election).
	MinClusterClaimLease = ReporterDataTimeout + time.Minute
	// DefaultClusterStoreSubdir is the embedded server's store_dir inside
	// data_dir.
	DefaultClusterStoreSubdir = "nats"
	// ClusterMaxPayload is the embedded NATS servers' largest message: a
	// record holds each distinct stored copy of the message once (a
	// redacting channel's differs), with its reports and envelope. NATS
	// warns above 8 MiB and handles such messages, only slower.
	ClusterMaxPayload = 64 << 20
	// MaxClusterMessageBytes caps smtp.max_message_bytes in cluster mode:
	// half a record, so that a message stored as two different copies
	// (a redacting channel and another) still fits; a larger record is
	// refused with 552 5.3.4.
	MaxClusterMessageBytes = ClusterMaxPayload / 2
)

// DefaultUses: a channel with no uses reports and stores.
var defaultUses = []Use{UseReport, UseStore}

// defaults returns a Config holding the default of every top-level key;
// the YAML is decoded onto it, so a key the file leaves out keeps it.
func defaults() Config {
	return Config{
		DataDir:           DefaultDataDir,
		RetentionOrphaned: Duration(DefaultRetentionOrphaned),
		SMTP: SMTP{
			MaxMessageBytes: DefaultMaxMessageBytes,
			MaxRecipients:   DefaultMaxRecipients,
			ReadTimeout:     Duration(DefaultReadTimeout),
			WriteTimeout:    Duration(DefaultWriteTimeout),
			MaxConnections:  DefaultMaxConnections,
			MaxLineLength:   DefaultMaxLineLength,

			MaxConnectionsPerIP: DefaultMaxConnectionsPerIP,
			ReservedConnections: DefaultReservedConnections,
			SessionTimeout:      Duration(DefaultSessionTimeout),
			MaxInflightBytes:    DefaultMaxInflightBytes,
		},
		HTTP: HTTP{Listen: DefaultHTTPListen, MaxBodyBytes: DefaultHTTPMaxBodyBytes,
			Console: Console{Enabled: DefaultConsoleEnabled, SessionTTL: Duration(DefaultConsoleSessionTTL)}},
		Reporter: Reporter{
			Format:                 DefaultReporterFormat,
			Smarthost:              Smarthost{TLS: DefaultSmarthostTLS},
			PerContactPerHour:      DefaultPerContactPerHour,
			MaxRecipientsPerReport: DefaultMaxRecipientsPerReport,
			MaxAge:                 Duration(DefaultReporterMaxAge),
			Retry: Retry{
				First:       Duration(DefaultRetryFirst),
				GiveUpAfter: Duration(DefaultGiveUpAfter),
			},
		},
		Contacts: Contacts{CacheTTL: Duration(DefaultContactCacheTTL)},
		Log:      Log{Level: DefaultLogLevel},
		Intel: Intel{
			ListAfter: ListAfter{
				Spamtrap:      DefaultIntelListAfterSpamtrap,
				UserComplaint: DefaultIntelListAfterComplaint,
			},
			Window:      Duration(DefaultIntelWindow),
			ExpireAfter: Duration(DefaultIntelExpireAfter),
			Allow:       IntelAllow{Builtin: DefaultIntelAllowBuiltin},
			Export:      IntelExport{Interval: Duration(DefaultIntelExportInterval)},
		},
		Subscribers: Subscribers{
			LookupTimeout:  Duration(DefaultLookupTimeout),
			LookupCacheTTL: Duration(DefaultLookupCacheTTL),
			Notify:         Notify{MinInterval: Duration(DefaultNotifyMinInterval)},
			Restrict: Restrict{
				After: RestrictAfter{Reports: DefaultRestrictReports, TrapHits: DefaultRestrictTrapHits,
					Window: Duration(DefaultRestrictWindow)},
				Webhook: Webhook{Timeout: Duration(DefaultWebhookTimeout), GiveUpAfter: Duration(DefaultWebhookGiveUpAfter)},
			},
		},
	}
}

// applyListDefaults fills keys inside list items and lists that YAML
// replaces whole (a decoded list never keeps a pre-set value).
func applyListDefaults(c *Config, hostname func() (string, error)) {
	if c.Hostname == "" {
		c.Hostname = DefaultHostname
		if h, err := hostname(); err == nil && h != "" {
			c.Hostname = h
		}
	}
	applyClusterDefaults(c)
	if len(c.SMTP.Listen) == 0 {
		c.SMTP.Listen = []string{DefaultSMTPListen}
	}
	for i := range c.Channels {
		ch := &c.Channels[i]
		if ch.Redact.Mode == "" {
			ch.Redact.Mode = DefaultRedactMode
		}
		if ch.Uses == nil {
			ch.Uses = append([]Use(nil), defaultUses...)
		}
		if !ch.ReportTo.Origin && len(ch.ReportTo.Partners) == 0 {
			ch.ReportTo.Origin = true
		}
		if ch.Retention == 0 {
			ch.Retention = Duration(DefaultRetention)
		}
	}
}
