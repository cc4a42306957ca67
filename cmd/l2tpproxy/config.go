package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"gopkg.in/yaml.v3"
)

// The configuration file (--config FILE, YAML or TOML) holds settings under
// exactly the flag names of the command: `server: vpn.example.com`,
// `route: [10.0.0.0/8]`. Precedence, lowest first: the flag's default, the
// file, the environment variable, the command line (urfave/cli's altsrc
// applies a file value only to a flag that neither the command line nor its
// environment variable set). String values may name environment variables,
// $VAR or ${VAR} (an unset one is an error; $$ is a literal $), so a file can
// be shared while its secrets stay in the service's environment. A key that
// is no flag name is an error: a misspelt setting must not be ignored.

// Names of the flags configurable adds.
const (
	flagConfig      = "config"
	flagPrintConfig = "print-config"
	flagCheckConfig = "check-config"
)

// keyTunnels is the file's list of tunnels (several VPN servers at once, see
// multitunnel.go); it has no flag.
const keyTunnels = "tunnels"

// configurable gives cmd a configuration file: every flag of cmd (whatever
// it is, so flags added later are covered) may be set in the file, and
// --config, --print-config and (with check) --check-config are added.
// --print-config prints the effective settings, secrets redacted, and
// exits; --check-config is for the command's action to handle (checkOnly).
func configurable(cmd *cli.Command, check bool) *cli.Command {
	flags := make([]cli.Flag, 0, len(cmd.Flags)+3)
	for _, f := range cmd.Flags {
		flags = append(flags, fileFlag(f))
	}
	flags = append(flags,
		&cli.StringFlag{Name: flagConfig, Usage: "read settings from `FILE` (YAML, or TOML if it ends in .toml), keys named like the flags; flags and environment variables override it; $VAR and ${VAR} in values are expanded", EnvVars: env("L2TPPROXY_CONFIG")},
		&cli.BoolFlag{Name: flagPrintConfig, Usage: "print the effective settings (file, environment, flags; secrets redacted) as a configuration file and exit"},
	)
	if check {
		flags = append(flags, &cli.BoolFlag{Name: flagCheckConfig, Usage: "check the settings (parse and validate everything, connect to nothing) and exit: 0 if usable, 2 with one line naming the problem (for systemd's ExecStartPre)"})
	}
	cmd.Flags = flags
	before, action := cmd.Before, cmd.Action
	cmd.Before = func(cx *cli.Context) error {
		if err := applyConfigFile(cx, flags); err != nil {
			return err
		}
		if before != nil {
			return before(cx)
		}
		return nil
	}
	cmd.Action = func(cx *cli.Context) error {
		if cx.Bool(flagPrintConfig) {
			return printConfig(cx.App.Writer, cx, flags)
		}
		return action(cx)
	}
	return cmd
}

// fileFlag wraps f so that altsrc can set it from the file. Every flag type
// this program uses is covered; TestEveryFlagConfigurable fails on a new one.
func fileFlag(f cli.Flag) cli.Flag {
	switch f := f.(type) {
	case *cli.StringFlag:
		return altsrc.NewStringFlag(f)
	case *cli.StringSliceFlag:
		return altsrc.NewStringSliceFlag(f)
	case *cli.BoolFlag:
		return altsrc.NewBoolFlag(f)
	case *cli.IntFlag:
		return altsrc.NewIntFlag(f)
	case *cli.UintFlag:
		return altsrc.NewUintFlag(f)
	case *cli.Int64Flag:
		return altsrc.NewInt64Flag(f)
	case *cli.Uint64Flag:
		return altsrc.NewUint64Flag(f)
	case *cli.DurationFlag:
		return altsrc.NewDurationFlag(f)
	case *cli.Float64Flag:
		return altsrc.NewFloat64Flag(f)
	case *cli.PathFlag:
		return altsrc.NewPathFlag(f)
	}
	return f
}

// unwrapFlag returns the cli flag inside an altsrc wrapper.
func unwrapFlag(f cli.Flag) cli.Flag {
	switch f := f.(type) {
	case *altsrc.StringFlag:
		return f.StringFlag
	case *altsrc.StringSliceFlag:
		return f.StringSliceFlag
	case *altsrc.BoolFlag:
		return f.BoolFlag
	case *altsrc.IntFlag:
		return f.IntFlag
	case *altsrc.UintFlag:
		return f.UintFlag
	case *altsrc.Int64Flag:
		return f.Int64Flag
	case *altsrc.Uint64Flag:
		return f.Uint64Flag
	case *altsrc.DurationFlag:
		return f.DurationFlag
	case *altsrc.Float64Flag:
		return f.Float64Flag
	case *altsrc.PathFlag:
		return f.PathFlag
	}
	return f
}

func flagName(f cli.Flag) string { return f.Names()[0] }

// applyConfigFile reads --config, if given, into cx's flags.
func applyConfigFile(cx *cli.Context, flags []cli.Flag) error {
	path := cx.String(flagConfig)
	if path == "" {
		return nil
	}
	m, err := readConfigFile(path, flags)
	if err != nil {
		return err
	}
	if k := exposedSecret(path); k != "" {
		fmt.Fprintf(cx.App.ErrWriter, "l2tpproxy: warning: config file %s holds %s and others may read it: chmod 600 it, or name an environment variable ($VAR) or a -file instead\n", path, k)
	}
	if _, ok := m[keyTunnels]; ok && cx.Command.Name != "up" {
		return configError("config file %s: a tunnels list is for l2tpproxy up only, not %s", path, cx.Command.Name)
	}
	if err := altsrc.ApplyInputSourceValues(cx, altsrc.NewMapInputSource(path, m), flags); err != nil {
		return configError("config file %s: %v", path, err)
	}
	return nil
}

// loadedTunnels returns the tunnels list of the file cx was configured
// from (nil without a file or without the list).
func loadedTunnels(cx *cli.Context, flags []cli.Flag) ([]map[any]any, error) {
	path := cx.String(flagConfig)
	if path == "" {
		return nil, nil
	}
	m, err := readConfigFile(path, flags)
	if err != nil {
		return nil, err
	}
	l, _ := m[keyTunnels].([]any)
	out := make([]map[any]any, 0, len(l))
	for _, e := range l {
		out = append(out, e.(map[any]any)) // checked by readConfigFile
	}
	return out, nil
}

// readConfigFile parses path (TOML if it ends in .toml, YAML otherwise,
// which includes JSON), checks its keys against flags, brings each value
// to the form altsrc wants for its flag and expands $VAR in strings.
func readConfigFile(path string, flags []cli.Flag) (map[any]any, error) {
	raw, err := parseConfigFile(path)
	if err != nil {
		return nil, err
	}
	byName := map[string]cli.Flag{}
	for _, f := range flags {
		if n := flagName(f); n != flagConfig && n != flagPrintConfig && n != flagCheckConfig {
			byName[n] = unwrapFlag(f)
		}
	}
	m, err := normalizeSettings(raw, byName, "")
	if err != nil {
		return nil, configError("config file %s: %v", path, err)
	}
	if t, ok := raw[keyTunnels]; ok {
		list, ok := t.([]any)
		if !ok {
			if ml, ok2 := t.([]map[string]any); ok2 { // TOML's [[tunnels]]
				for _, e := range ml {
					list = append(list, e)
				}
				ok = true
			}
		}
		if !ok {
			return nil, configError("config file %s: %s must be a list of tunnels", path, keyTunnels)
		}
		tflags := tunnelFlagsByName()
		var tunnels []any
		for i, e := range list {
			em, ok := e.(map[string]any)
			if !ok {
				return nil, configError("config file %s: %s[%d] is not a table of settings", path, keyTunnels, i)
			}
			nm, err := normalizeSettings(em, tflags, fmt.Sprintf("%s[%d].", keyTunnels, i))
			if err != nil {
				return nil, configError("config file %s: %v", path, err)
			}
			tunnels = append(tunnels, nm)
		}
		m[keyTunnels] = tunnels
	}
	return m, nil
}

// parseConfigFile parses path as it is, nothing checked or expanded.
func parseConfigFile(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, configError("cannot read --config: %v", err)
	}
	var raw map[string]any
	if strings.EqualFold(filepath.Ext(path), ".toml") {
		_, err = toml.Decode(string(b), &raw)
	} else {
		err = yaml.Unmarshal(b, &raw)
	}
	if err != nil {
		// The parsers quote the offending text, which may be a secret: give
		// the position only.
		return nil, configError("config file %s: %s", path, syntaxPosition(err))
	}
	return raw, nil
}

// exposedSecret names a secret written out in path (not a $VAR) when others
// than its owner may read the file; "" if none or not on a POSIX system.
func exposedSecret(path string) string {
	st, err := os.Stat(path)
	if err != nil || runtime.GOOS == "windows" || st.Mode().Perm()&0o077 == 0 {
		return ""
	}
	raw, err := parseConfigFile(path)
	if err != nil {
		return ""
	}
	literal := func(m map[string]any, where string) string {
		for k, v := range m {
			if s, ok := v.(string); ok && isSecret(k) && s != "" && !strings.Contains(s, "$") {
				return where + k
			}
		}
		return ""
	}
	if k := literal(raw, ""); k != "" {
		return k
	}
	if l, ok := raw[keyTunnels].([]any); ok {
		for i, e := range l {
			if m, ok := e.(map[string]any); ok {
				if k := literal(m, fmt.Sprintf("%s[%d].", keyTunnels, i)); k != "" {
					return k
				}
			}
		}
	}
	return ""
}

// syntaxPosition reduces a parser's error to where it is.
func syntaxPosition(err error) string {
	var te toml.ParseError
	if errors.As(err, &te) {
		return fmt.Sprintf("TOML syntax error at line %d", te.Position.Line)
	}
	s := err.Error()
	if i := strings.Index(s, "line "); i >= 0 {
		j := i + len("line ")
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		return "YAML syntax error at " + s[i:j]
	}
	return "not YAML: cannot parse it"
}

// normalizeSettings checks raw's keys against flags and converts values:
// scalars of a string flag become strings, a string flag's list is an
// error, a list flag takes one string or a list of them, integers become
// int (what altsrc expects), and strings have $VAR expanded.
func normalizeSettings(raw map[string]any, flags map[string]cli.Flag, prefix string) (map[any]any, error) {
	m := make(map[any]any, len(raw))
	for k, v := range raw {
		if prefix == "" && k == keyTunnels {
			continue
		}
		f, ok := flags[k]
		if !ok {
			return nil, fmt.Errorf("unknown setting %q (settings are named like the flags: %s)", prefix+k, strings.Join(sortedKeys(flags), ", "))
		}
		key := prefix + k
		switch f.(type) {
		case *cli.StringFlag, *cli.PathFlag:
			s, ok := scalarString(v)
			if !ok {
				return nil, fmt.Errorf("%s must be a single value", key)
			}
			s, err := expandEnv(key, s)
			if err != nil {
				return nil, err
			}
			m[k] = s
		case *cli.StringSliceFlag:
			var items []any
			if l, ok := v.([]any); ok {
				items = l
			} else {
				items = []any{v}
			}
			out := make([]any, 0, len(items))
			for _, it := range items {
				s, ok := scalarString(it)
				if !ok {
					return nil, fmt.Errorf("%s must be a value or a list of values", key)
				}
				s, err := expandEnv(key, s)
				if err != nil {
					return nil, err
				}
				out = append(out, s)
			}
			m[k] = out
		default: // numbers, durations, booleans
			if s, ok := v.(string); ok {
				s, err := expandEnv(key, s)
				if err != nil {
					return nil, err
				}
				v = s
				if _, isBool := f.(*cli.BoolFlag); isBool {
					b, err := strconv.ParseBool(s)
					if err != nil {
						return nil, fmt.Errorf("%s: %q is not true or false", key, s)
					}
					v = b
				} else if n, err := strconv.ParseInt(s, 10, 64); err == nil {
					if _, isDur := f.(*cli.DurationFlag); !isDur {
						v = int(n)
					}
				}
			}
			if n, ok := v.(int64); ok { // TOML integers
				v = int(n)
			}
			m[k] = v
		}
	}
	return m, nil
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func scalarString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case int, int64, uint64, float64, bool:
		return fmt.Sprint(v), true
	}
	return "", false
}

// expandEnv expands $VAR and ${VAR} in s; an unset variable is an error (a
// secret silently empty would fail later, less clearly). $$ is a $.
func expandEnv(key, s string) (string, error) {
	var missing string
	out := os.Expand(s, func(name string) string {
		if name == "$" {
			return "$"
		}
		v, ok := os.LookupEnv(name)
		if !ok && missing == "" {
			missing = name
		}
		return v
	})
	if missing != "" {
		return "", fmt.Errorf("%s names $%s, which is not set in the environment", key, missing)
	}
	return out, nil
}

// printConfig writes the effective value of every visible flag as a YAML
// configuration file, secrets redacted.
func printConfig(w io.Writer, cx *cli.Context, flags []cli.Flag) error {
	fmt.Fprintf(w, "# l2tpproxy %s: effective settings (defaults, --config file, environment, flags)\n", cx.Command.Name)
	for _, f := range flags {
		name := flagName(f)
		if name == flagConfig || name == flagPrintConfig || name == flagCheckConfig {
			continue
		}
		if vf, ok := unwrapFlag(f).(cli.VisibleFlag); ok && !vf.IsVisible() {
			continue
		}
		fmt.Fprintf(w, "%s: %s\n", name, yamlValue(cx, f, name))
	}
	if tunnels, err := loadedTunnels(cx, flags); err == nil && len(tunnels) > 0 {
		fmt.Fprintf(w, "%s:\n", keyTunnels)
		for _, t := range tunnels {
			lead := "  - "
			for _, k := range sortedKeys(stringKeys(t)) {
				v := t[k]
				var s string
				switch {
				case isSecret(k):
					s = redacted(fmt.Sprint(v) != "")
				default:
					s = yamlScalarOrList(v)
				}
				fmt.Fprintf(w, "%s%s: %s\n", lead, k, s)
				lead = "    "
			}
		}
	}
	return nil
}

func stringKeys(m map[any]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[fmt.Sprint(k)] = v
	}
	return out
}

// isSecret tells the settings --print-config redacts: exec.go's
// secretFlags, and any flag added later whose name says it is a secret
// (its -file twin is a path, shown).
func isSecret(name string) bool {
	if secretFlags[name] {
		return true
	}
	if strings.HasSuffix(name, "-file") {
		return false
	}
	for _, w := range []string{"password", "psk", "secret", "token"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

func redacted(set bool) string {
	if set {
		return `"<redacted>"`
	}
	return `""`
}

func yamlValue(cx *cli.Context, f cli.Flag, name string) string {
	if isSecret(name) {
		return redacted(cx.String(name) != "")
	}
	switch unwrapFlag(f).(type) {
	case *cli.StringSliceFlag:
		return yamlList(cx.StringSlice(name))
	case *cli.StringFlag, *cli.PathFlag:
		return strconv.Quote(cx.String(name))
	case *cli.DurationFlag:
		return strconv.Quote(cx.Duration(name).String())
	}
	return fmt.Sprint(cx.Value(name))
}

func yamlList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = strconv.Quote(v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func yamlScalarOrList(v any) string {
	if l, ok := v.([]any); ok {
		s := make([]string, len(l))
		for i, e := range l {
			s[i] = fmt.Sprint(e)
		}
		return yamlList(s)
	}
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// checkServe is --check-config: everything serve would get is valid. It
// neither listens nor connects (the service may be running), so a port in
// use is not found; names in listen addresses are not resolved.
func checkServe(w io.Writer, sc serveConfig) error {
	if len(sc.Tunnels) == 0 { // the tunnels list is checked as it is read
		if err := sc.Tunnel.Validate(); err != nil {
			return err
		}
	}
	for _, l := range []struct{ flag, addr string }{{"--socks5", sc.SOCKS5}, {"--http", sc.HTTP}} {
		if l.addr == "" {
			continue
		}
		host, port, err := net.SplitHostPort(l.addr)
		if err != nil {
			return configError("%s %q: %v", l.flag, l.addr, err)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return configError("%s %q: %q is not a port", l.flag, l.addr, port)
		}
		if a, err := netip.ParseAddr(host); (host == "" || err == nil && !a.IsLoopback()) && sc.Proxy.Credentials == nil && !sc.Proxy.InsecureOpen {
			return configError("%s %s is not a loopback address: proxy credentials are needed (--proxy-user and --proxy-password or --proxy-password-file), or --insecure-open-proxy", l.flag, l.addr)
		}
	}
	for _, f := range sc.Forwards {
		if err := checkForwardBind(f, sc.Proxy); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "l2tpproxy: configuration OK")
	return nil
}
