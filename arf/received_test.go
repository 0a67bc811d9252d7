package arf

import (
	"testing"
	"time"
)

type receivedCase struct {
	name string
	in   string
	want Received // Raw and Date are not compared; dateUTC is
	date string   // RFC 3339 UTC, "" for none
}

var receivedCases = []receivedCase{
	{"postfix", "from mail.example.com (mail.example.com [93.184.216.34])\n\tby mx.isp.example (Postfix) with ESMTPS id 4Xyz\n\tfor <alice@isp.example>; Mon,  6 Jan 2025 09:59:58 +0100 (CET)",
		Received{FromHost: "mail.example.com", HELO: "mail.example.com", RDNS: "mail.example.com", IP: mustAddr("93.184.216.34"), ByHost: "mx.isp.example", With: "ESMTPS", ID: "4Xyz", For: "alice@isp.example"}, "2025-01-06T08:59:58Z"},
	{"postfix unknown rdns ipv6 literal helo", "from [IPv6:::ffff:203.0.113.68] (unknown [151.101.1.1]) by example.com (Postfix) with ESMTP id 9CCA for <user@example.com>; Mon, 7 Apr 2025 10:10:06 -0600 (UTC)",
		Received{FromHost: "[IPv6:::ffff:203.0.113.68]", HELO: "[IPv6:::ffff:203.0.113.68]", IP: mustAddr("151.101.1.1"), ByHost: "example.com", With: "ESMTP", ID: "9CCA", For: "user@example.com"}, "2025-04-07T16:10:06Z"},
	{"postfix ipv6", "from host.example (host.example [IPv6:2001:4860:4860::8888]) by mx.isp.example (Postfix) with ESMTP id A1; Tue, 7 Jan 2025 10:00:00 +0000",
		Received{FromHost: "host.example", HELO: "host.example", RDNS: "host.example", IP: mustAddr("2001:4860:4860::8888"), ByHost: "mx.isp.example", With: "ESMTP", ID: "A1"}, "2025-01-07T10:00:00Z"},
	{"sendmail", "from helo.example (user@rdns.example [93.184.216.34]) (may be forged)\n\tby mx.isp.example (8.13.1/8.13.1) with ESMTP id m6MIeO1a015502\n\tfor <bob@isp.example>; Wed, 23 Jul 2008 06:12:33 +0900",
		Received{FromHost: "helo.example", HELO: "helo.example", RDNS: "rdns.example", IP: mustAddr("93.184.216.34"), ByHost: "mx.isp.example", With: "ESMTP", ID: "m6MIeO1a015502", For: "bob@isp.example"}, "2008-07-22T21:12:33Z"},
	{"sendmail local", "from localhost (localhost)\n\tby tky-caa.sendingdomain.net (8.13.1/8.13.1) id m6MIeO1a015502;\n\tWed, 23 Jul 2008 06:12:33 +0900",
		Received{FromHost: "localhost", HELO: "localhost", ByHost: "tky-caa.sendingdomain.net", ID: "m6MIeO1a015502"}, "2008-07-22T21:12:33Z"},
	{"exim literal", "from [203.0.113.68] (helo=smtpclient.apple)\n\tby node04.mailgate.example.net with esmtp (Exim 4.92)\n\t(envelope-from <user@example.com>)\n\tid 1u1tpA-00AAwZ-CR\n\tfor user@example.com; Mon, 07 Apr 2025 23:16:08 +0200",
		Received{FromHost: "[203.0.113.68]", HELO: "smtpclient.apple", IP: mustAddr("203.0.113.68"), ByHost: "node04.mailgate.example.net", With: "esmtp", ID: "1u1tpA-00AAwZ-CR", For: "user@example.com", EnvelopeFrom: "user@example.com"}, "2025-04-07T21:16:08Z"},
	{"exim port", "from rdns.example ([93.184.216.34]:54321 helo=client.example) by mx.isp.example with esmtps (TLS1.3) (Exim 4.96) (envelope-from <a@b.example>) id 1tUu; Tue, 07 Jan 2025 10:00:00 +0000",
		Received{FromHost: "rdns.example", HELO: "client.example", RDNS: "", IP: mustAddr("93.184.216.34"), Port: 54321, ByHost: "mx.isp.example", With: "esmtps", ID: "1tUu", EnvelopeFrom: "a@b.example"}, "2025-01-07T10:00:00Z"},
	{"exim ipv6 port", "from [2001:db8::25] (port=2525 helo=x.example) by mx.isp.example with esmtp id 1; Tue, 07 Jan 2025 10:00:00 +0000",
		Received{FromHost: "[2001:db8::25]", HELO: "x.example", IP: mustAddr("2001:db8::25"), Port: 2525, ByHost: "mx.isp.example", With: "esmtp", ID: "1"}, "2025-01-07T10:00:00Z"},
	{"exim local", "from root by node04.mailgate.example.net with local-generated (Exim 4.92)\n\t(envelope-from <no-reply@node01.mailgate.example.net>)\n\tid 1u1tpB-00AA5u-ED\n\tfor dmarc@example.com; Mon, 07 Apr 2025 23:16:09 +0200",
		Received{FromHost: "root", HELO: "root", ByHost: "node04.mailgate.example.net", With: "local-generated", ID: "1u1tpB-00AA5u-ED", For: "dmarc@example.com", EnvelopeFrom: "no-reply@node01.mailgate.example.net"}, "2025-04-07T21:16:09Z"},
	{"ecelerity ip:port in brackets", "from [10.10.10.10] ([10.10.10.10:4227] helo=mail02.someserver.com)\n\tby mail516.prod.linkedin.com (envelope-from <>)\n\t(ecelerity 3.6.21.53563 r(Core:3.6.21.0)) with ESMTPS (cipher=ECDHE-RSA-AES256-GCM-SHA384\n\tsubject=\"/OU=Domain Control Validated/CN=*.someserver.com\")\n\tid CA/91-26019-ABCDECC5; Tue, 30 Apr 2019 02:09:00 +0000",
		Received{FromHost: "[10.10.10.10]", HELO: "mail02.someserver.com", IP: mustAddr("10.10.10.10"), Port: 4227, ByHost: "mail516.prod.linkedin.com", With: "ESMTPS", ID: "CA/91-26019-ABCDECC5"}, "2019-04-30T02:09:00Z"},
	{"qmail network", "from unknown (HELO ourmailserver.com) (10.1.0.252)\n  by ourmailserver.com with SMTP; 30 Dec 2010 18:37:33 -0000",
		Received{FromHost: "unknown", HELO: "ourmailserver.com", IP: mustAddr("10.1.0.252"), ByHost: "ourmailserver.com", With: "SMTP"}, "2010-12-30T18:37:33Z"},
	{"qmail invoked", "(qmail 16743 invoked from network); 30 Dec 2010 18:37:33 -0000", Received{}, ""},
	{"qmail yahoo fake literal", "from 127.0.0.1  (EHLO mail.ganeshaspeaks.com) (72.55.174.173)\n  by mta127.mail.ac4.yahoo.com with SMTP; Thu, 18 Feb 2010 03:21:50 -0800",
		Received{FromHost: "127.0.0.1", HELO: "mail.ganeshaspeaks.com", IP: mustAddr("72.55.174.173"), ByHost: "mta127.mail.ac4.yahoo.com", With: "SMTP"}, "2010-02-18T11:21:50Z"},
	{"qmail smtp auth", "from unknown (HELO www.ganeshaspeaks.com) (predictions@mail.ganeshaspeaks.com@72.55.174.202)\n  by mail.ganeshaspeaks.com with ESMTPA; 18 Feb 2010 11:21:49 -0000",
		Received{FromHost: "unknown", HELO: "www.ganeshaspeaks.com", IP: mustAddr("72.55.174.202"), ByHost: "mail.ganeshaspeaks.com", With: "ESMTPA"}, "2010-02-18T11:21:49Z"},
	{"qmail bare ip from", "from 64.12.136.131 by tky-ch2.sendingdomain.net (envelope-from\n <scomp@aol.net>, uid 1013) with qmail-scanner-1.25-st-qms; 22\n Jul 2008 21:13:42 -0000",
		Received{FromHost: "64.12.136.131", HELO: "64.12.136.131", IP: mustAddr("64.12.136.131"), ByHost: "tky-ch2.sendingdomain.net", With: "qmail-scanner-1.25-st-qms", EnvelopeFrom: "scomp@aol.net"}, "2008-07-22T21:13:42Z"},
	{"exchange smtpsvc", "from ourdomain.com ([24.64.1.1]) by snt0-mc2-f47.Snt0.hotmail.com with Microsoft SMTPSVC(6.0.3790.4675);\n\t Thu, 30 Dec 2010 06:50:29 -0800",
		Received{FromHost: "ourdomain.com", HELO: "ourdomain.com", IP: mustAddr("24.64.1.1"), ByHost: "snt0-mc2-f47.Snt0.hotmail.com", With: "Microsoft"}, "2010-12-30T14:50:29Z"},
	{"exchange server bare ips", "from DENU02MS0016.someserver.loc (10.156.68.14) by\n DENU02MS0017.someserver.loc (10.10.10.9) with Microsoft SMTP Server (TLS) id\n 15.0.1367.3; Tue, 30 Apr 2019 04:09:09 +0200",
		Received{FromHost: "DENU02MS0016.someserver.loc", HELO: "DENU02MS0016.someserver.loc", IP: mustAddr("10.156.68.14"), ByHost: "DENU02MS0017.someserver.loc", ByIP: mustAddr("10.10.10.9"), With: "Microsoft", ID: "15.0.1367.3"}, "2019-04-30T02:09:09Z"},
	{"exchange online ipv6", "from AM6PR08MB1234.eurprd08.prod.outlook.com (2603:10a6:20b:40::13) by AM6PR08MB5678.eurprd08.prod.outlook.com (2603:10a6:20b:50::14) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.6745.34; Tue, 7 Jan 2025 10:00:00 +0000",
		Received{FromHost: "AM6PR08MB1234.eurprd08.prod.outlook.com", HELO: "AM6PR08MB1234.eurprd08.prod.outlook.com", IP: mustAddr("2603:10a6:20b:40::13"), ByHost: "AM6PR08MB5678.eurprd08.prod.outlook.com", ByIP: mustAddr("2603:10a6:20b:50::14"), With: "Microsoft", ID: "15.20.6745.34"}, "2025-01-07T10:00:00Z"},
	{"gmail", "from mail-sor-f41.google.com (mail-sor-f41.google.com. [209.85.220.41])\n        by mx.google.com with SMTPS id p16sor\n        for <dummy2@example.com>\n        (Google Transport Security);\n        Thu, 08 Nov 2018 14:38:18 -0800 (PST)",
		Received{FromHost: "mail-sor-f41.google.com", HELO: "mail-sor-f41.google.com", RDNS: "mail-sor-f41.google.com", IP: mustAddr("209.85.220.41"), ByHost: "mx.google.com", With: "SMTPS", ID: "p16sor", For: "dummy2@example.com"}, "2018-11-08T22:38:18Z"},
	{"gmail internal by ipv6", "by 2002:a17:906:4cca:0:0:0:0 with SMTP id q10-v6csp51694ejt;\n        Thu, 8 Nov 2018 14:38:18 -0800 (PST)",
		Received{ByHost: "2002:a17:906:4cca:0:0:0:0", ByIP: mustAddr("2002:a17:906:4cca::"), With: "SMTP", ID: "q10-v6csp51694ejt"}, "2018-11-08T22:38:18Z"},
	{"gmail peer differs from literal", "from [172.17.234.195] (p5B283A6B.dip0.t-ipconnect.de. [91.40.58.107])\n        by smtp.example.com with ESMTPSA id p16-v6sm7861105wro.29.2018.11.08.14.39.35\n        for <dummy2@example.com>\n        (version=TLS1_2 cipher=ECDHE-RSA-AES128-GCM-SHA256 bits=128/128);\n        Thu, 08 Nov 2018 14:39:35 -0800 (PST)",
		Received{FromHost: "[172.17.234.195]", HELO: "[172.17.234.195]", RDNS: "p5B283A6B.dip0.t-ipconnect.de", IP: mustAddr("91.40.58.107"), ByHost: "smtp.example.com", With: "ESMTPSA", ID: "p16-v6sm7861105wro.29.2018.11.08.14.39.35", For: "dummy2@example.com"}, "2018-11-08T22:39:35Z"},
	{"lmtp literal", "from [192.0.2.22] by mta2.r.example.org (LMTP);\n  Thu, 29 Apr 2015 23:34:45 +0000 (UTC)",
		Received{FromHost: "[192.0.2.22]", HELO: "[192.0.2.22]", IP: mustAddr("192.0.2.22"), ByHost: "mta2.r.example.org"}, "2015-04-29T23:34:45Z"},
	{"unbalanced", "from x (y [1.2.3.4 by z", Received{FromHost: "x", HELO: "x", IP: mustAddr("1.2.3.4")}, ""},
}

func TestParseReceived(t *testing.T) {
	for _, c := range receivedCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseReceived(c.in)
			if c.want == (Received{}) {
				if err != ErrNotReceived {
					t.Fatalf("err = %v, want ErrNotReceived", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Raw != c.in {
				t.Error("Raw not kept")
			}
			d := ""
			if !got.Date.IsZero() {
				d = got.Date.UTC().Format(time.RFC3339)
			}
			if d != c.date {
				t.Errorf("date = %q (raw %q), want %q", d, got.DateRaw, c.date)
			}
			got.Raw, got.Date, got.DateRaw = "", time.Time{}, ""
			if got != c.want {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestFirstUntrusted(t *testing.T) {
	h := Header{
		{"Received", "from mx2.isp.example (mx2.isp.example [10.0.0.5]) by store.isp.example; Mon, 6 Jan 2025 09:59:59 +0000"},
		{"Received", "from relay.isp.example (relay.isp.example [212.27.48.10]) by mx2.isp.example; Mon, 6 Jan 2025 09:59:59 +0000"},
		{"X-Not", "from a (b [1.1.1.1]) by c"},
		{"Received", "from spammer (spammer [151.101.1.1]) by relay.isp.example; Mon, 6 Jan 2025 09:59:58 +0000"},
	}
	chain := ReceivedChain(h)
	if len(chain) != 3 {
		t.Fatalf("chain has %d hops, want 3", len(chain))
	}
	trusted := func(r Received) bool { return !IsPublic(r.IP) || r.IP == mustAddr("212.27.48.10") }
	hop, ok := FirstUntrusted(chain, trusted)
	if !ok || hop.IP != mustAddr("151.101.1.1") {
		t.Fatalf("first untrusted = %v %v, want 151.101.1.1", hop.IP, ok)
	}
	if _, ok := FirstUntrusted(chain, func(Received) bool { return true }); ok {
		t.Fatal("all trusted but a hop was returned")
	}
}
