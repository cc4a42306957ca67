package main

import (
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"
)

// serviceLogger is the logger of up and exec: --log-level, and
// --log-format text (newLogger's, for people) or json (slog's JSON handler,
// one object a line, RFC 3339 times, for log collectors).
func serviceLogger(cx *cli.Context) (*slog.Logger, error) {
	level := cx.String("log-level")
	switch f := cx.String("log-format"); f {
	case "", "text":
		return newLogger(level)
	case "json":
		var l slog.Level
		if err := l.UnmarshalText([]byte(level)); err != nil {
			return nil, configError("--log-level %q: want debug, info, warn or error", level)
		}
		return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
	default:
		return nil, configError("--log-format %q: want text or json", f)
	}
}
