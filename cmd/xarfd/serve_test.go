package main

import (
	"bytes"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/config"
)

func TestKeepRestartOnly(t *testing.T) {
	running, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	next, _ := config.Load("")
	next.Hostname = "other.example"
	next.SMTP.Listen = []string{"127.0.0.1:2526"}
	next.SMTP.MaxRecipients = 7
	next.SMTP.AuthFile = "/etc/xarfd/users" // read again at reload: not a restart key
	next.HTTP.Listen = "127.0.0.1:8026"
	next.Reporter.Enabled = true // reloadable
	keys := keepRestartOnly(running, next)
	slices.Sort(keys)
	want := []string{"hostname", "http.listen", "smtp.listen", "smtp.max_recipients"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys = %v, want %v", keys, want)
	}
	if next.Hostname != running.Hostname || next.SMTP.Listen[0] != running.SMTP.Listen[0] ||
		next.SMTP.MaxRecipients != running.SMTP.MaxRecipients || next.HTTP.Listen != running.HTTP.Listen {
		t.Errorf("restart-only values not kept: %+v", next)
	}
	if next.SMTP.AuthFile != "/etc/xarfd/users" || !next.Reporter.Enabled {
		t.Errorf("reloadable values lost: %+v", next)
	}
}

func TestLevelFilter(t *testing.T) {
	var b bytes.Buffer
	var level atomic.Int32
	level.Store(int32(zerolog.InfoLevel))
	log := newLogger(&b, &level)
	log.Debug().Msg("hidden")
	log.Info().Msg("shown")
	level.Store(int32(zerolog.DebugLevel)) // a reload to debug
	log.Debug().Msg("now shown")
	out := b.String()
	if bytes.Contains(b.Bytes(), []byte("hidden")) || !bytes.Contains(b.Bytes(), []byte(`"shown"`)) || !bytes.Contains(b.Bytes(), []byte("now shown")) {
		t.Errorf("log:\n%s", out)
	}
}

func TestKeepRestartOnlyCluster(t *testing.T) {
	running, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	running.Cluster = &config.Cluster{Node: "mx1", Replicas: 3}
	next, _ := config.Load("")
	next.Cluster = &config.Cluster{Node: "mx1", Replicas: 5}
	if keys := keepRestartOnly(running, next); !slices.Equal(keys, []string{"cluster"}) || next.Cluster.Replicas != 3 {
		t.Errorf("changed cluster block: keys %v, replicas %d", keys, next.Cluster.Replicas)
	}
	same, _ := config.Load("")
	same.Cluster = &config.Cluster{Node: "mx1", Replicas: 3}
	if keys := keepRestartOnly(running, same); len(keys) != 0 {
		t.Errorf("same cluster block: keys %v", keys)
	}
}
