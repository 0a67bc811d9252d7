package main

import (
	"bytes"
	"crypto"

	"github.com/xarfd/xarfd/auth"
	"github.com/xarfd/xarfd/cases"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/reporter/deliver"
)

// parsers read the files whose formats belong to our other packages, for
// config.Prepare: the same functions the daemon uses when it runs.
func parsers() config.Parsers {
	return config.Parsers{
		Users: func(b []byte, path string) (config.UserSet, error) {
			u, err := auth.ParseUsers(bytes.NewReader(b), path)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			return u, nil
		},
		PrivateKey: func(pem []byte) (crypto.Signer, error) { return deliver.ParsePrivateKey(pem) },
	}
}

// loadConfig is the one path from a file to a configuration that can run:
// decode, validate, then read every file it names. check-config, serve
// and SIGHUP all take it, so none accepts what another refuses.
func loadConfig(path string) (*config.Config, *config.Resources, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	res, err := cfg.Prepare(parsers())
	if err != nil {
		return nil, nil, err
	}
	if err := cases.Check(cfg); err != nil {
		return nil, nil, err
	}
	return cfg, res, nil
}
