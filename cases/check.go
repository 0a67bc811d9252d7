package cases

import (
	"fmt"
	"os"
	"strings"

	"github.com/xarfd/xarfd/config"
)

// Check reads what cfg's subscribers block names that must be right
// before the daemon runs it: the subscriber files can be opened, the
// notification template parses, and the webhook secret is usable. The
// files' rows are checked when they are loaded (malformed rows are
// skipped and logged, not fatal). Errors name the configuration file
// and the key; check-config, serve and SIGHUP call it.
func Check(cfg *config.Config) error {
	s := &cfg.Subscribers
	var errs config.Errors
	bad := func(key string, err error) {
		msg := strings.TrimPrefix(strings.TrimPrefix(err.Error(), key+": "), key+" ")
		errs = append(errs, &config.Error{File: cfg.Source, Key: key, Msg: msg})
	}
	for key, path := range map[string]string{"subscribers.static_file": s.StaticFile, "subscribers.assignments_file": s.AssignmentsFile} {
		if path == "" {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			bad(key, fmt.Errorf("cannot read %s: %w", path, err))
			continue
		}
		f.Close()
	}
	if _, err := loadTemplate(s.Notify.TemplateFile); err != nil {
		bad("subscribers.notify.template_file", err)
	}
	if s.Restrict.Enabled && s.Restrict.Webhook.SecretFile != "" {
		if _, err := readSecret(s.Restrict.Webhook.SecretFile); err != nil {
			bad("subscribers.restrict.webhook.secret_file", err)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}
