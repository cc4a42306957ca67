package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2/altsrc"
)

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runCapture runs the program and returns its exit code, stdout and stderr.
func runCapture(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	stderr = captureStderr(t, func() {
		stdout = captureStdout(t, func() { code = run(append([]string{"l2tpproxy"}, args...)) })
	})
	return code, stdout, stderr
}

// printed returns the value lines of --print-config output, by key.
func printed(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, " ") {
			m[k] = v
		}
	}
	return m
}

// TestConfigPrecedence: the file sets what nothing else sets; the
// environment beats the file; the command line beats both. For a string,
// a number, a duration and a list.
func TestConfigPrecedence(t *testing.T) {
	file := writeFile(t, "c.yaml", "user: from-file\nmax-connections: 11\nconnect-timeout: 11s\nroute: [10.1.0.0/16, 10.2.0.0/16]\nhttp: ''\n")
	t.Run("file", func(t *testing.T) {
		code, out, errs := runCapture(t, "up", "--config", file, "--print-config")
		p := printed(out)
		if code != 0 || p["user"] != `"from-file"` || p["max-connections"] != "11" || p["connect-timeout"] != `"11s"` ||
			p["route"] != `["10.1.0.0/16", "10.2.0.0/16"]` || p["http"] != `""` || p["socks5"] != `"127.0.0.1:1080"` {
			t.Errorf("code %d, %v, stderr %q", code, p, errs)
		}
	})
	t.Run("env over file", func(t *testing.T) {
		t.Setenv("L2TPPROXY_USER", "from-env")
		t.Setenv("L2TPPROXY_MAX_CONNECTIONS", "22")
		t.Setenv("L2TPPROXY_ROUTE", "10.3.0.0/16")
		_, out, _ := runCapture(t, "up", "--config", file, "--print-config")
		p := printed(out)
		if p["user"] != `"from-env"` || p["max-connections"] != "22" || p["connect-timeout"] != `"11s"` || p["route"] != `["10.3.0.0/16"]` {
			t.Errorf("%v", p)
		}
	})
	t.Run("flag over env and file", func(t *testing.T) {
		t.Setenv("L2TPPROXY_USER", "from-env")
		t.Setenv("L2TPPROXY_CONFIG", file) // the file itself from the environment
		_, out, _ := runCapture(t, "up", "--user", "from-flag", "--connect-timeout", "33s", "--route", "10.4.0.0/16", "--print-config")
		p := printed(out)
		if p["user"] != `"from-flag"` || p["max-connections"] != "11" || p["connect-timeout"] != `"33s"` || p["route"] != `["10.4.0.0/16"]` {
			t.Errorf("%v", p)
		}
	})
	t.Run("toml", func(t *testing.T) {
		f := writeFile(t, "c.toml", "user = \"toml-user\"\nmax-connections = 7\nroute = [\"10.9.0.0/16\"]\ninsecure-open-proxy = true\n")
		_, out, _ := runCapture(t, "up", "--config", f, "--print-config")
		p := printed(out)
		if p["user"] != `"toml-user"` || p["max-connections"] != "7" || p["route"] != `["10.9.0.0/16"]` || p["insecure-open-proxy"] != "true" {
			t.Errorf("%v", p)
		}
	})
}

// TestConfigExpansion: $VAR and ${VAR} in values come from the
// environment, in lists too; $$ is a $; an unset variable is one line and
// exit 2, naming the variable and never a value.
func TestConfigExpansion(t *testing.T) {
	t.Setenv("T_USER", "alice")
	t.Setenv("T_NET", "10.7.0.0/16")
	t.Setenv("T_WAIT", "9s")
	file := writeFile(t, "c.yaml", "user: ${T_USER}-$T_USER\nproxy-user: a$$b\nroute: [$T_NET]\nconnect-wait: $T_WAIT\n")
	_, out, errs := runCapture(t, "up", "--config", file, "--print-config")
	p := printed(out)
	if p["user"] != `"alice-alice"` || p["proxy-user"] != `"a$b"` || p["route"] != `["10.7.0.0/16"]` || p["connect-wait"] != `"9s"` {
		t.Errorf("%v (stderr %q)", p, errs)
	}

	bad := writeFile(t, "bad.yaml", "user: alice\npsk: ${T_UNSET_PSK}\n")
	code, out, errs := runCapture(t, "up", "--config", bad, "--print-config")
	if code != exitConfig || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "psk names $T_UNSET_PSK, which is not set") {
		t.Errorf("code %d, stdout %q, stderr %q", code, out, errs)
	}
}

// TestPrintConfigRedacts: secrets from a file, the environment and a flag
// never appear; a set secret shows as <redacted>, an unset one as "".
func TestPrintConfigRedacts(t *testing.T) {
	t.Setenv("T_PSK", "sEcReT-psk")
	t.Setenv("L2TPPROXY_PASSWORD", "sEcReT-pw")
	file := writeFile(t, "c.yaml", "psk: $T_PSK\nuser: u\n")
	code, out, _ := runCapture(t, "up", "--config", file, "--proxy-user", "p", "--proxy-password", "sEcReT-proxy", "--print-config")
	p := printed(out)
	if code != 0 || strings.Contains(out, "sEcReT") {
		t.Fatalf("code %d, a secret in:\n%s", code, out)
	}
	for _, k := range []string{"psk", "password", "proxy-password"} {
		if p[k] != `"<redacted>"` {
			t.Errorf("%s: %s", k, p[k])
		}
	}
	_, out, _ = runCapture(t, "up", "--print-config")
	if p := printed(out); p["psk"] != `""` {
		t.Errorf("unset psk printed as %s", p["psk"])
	}
}

// TestPrintConfigIsAConfig: --print-config's output, read back as the
// configuration file, gives the same settings.
func TestPrintConfigIsAConfig(t *testing.T) {
	_, out1, _ := runCapture(t, "up", "--server", "vpn.example:500", "--route", "10.0.0.0/8", "--domain", "corp.example", "-L", "8080:web.corp.example:80", "--connect-timeout", "12s", "--print-config")
	f := writeFile(t, "again.yaml", out1)
	code, out2, errs := runCapture(t, "up", "--config", f, "--print-config")
	if code != 0 || out1 != out2 {
		t.Errorf("code %d (%s); first:\n%s\nsecond:\n%s", code, errs, out1, out2)
	}
}

// TestCheckConfig: --check-config exits 0 with one line for a usable
// configuration, without connecting (the server does not exist), and 2
// with one line naming the problem for each kind of mistake.
func TestCheckConfig(t *testing.T) {
	good := "server: 192.0.2.1\npsk: p\nuser: u\npassword: pw\n"
	for _, tc := range []struct {
		name, file string
		args       []string
		want       string // stderr, or stdout when code is 0
		code       int
	}{
		{"ok", good, nil, "l2tpproxy: configuration OK", 0},
		{"ok with forwards", good + "local-forward: [8080:web:80, '127.0.0.2:5353:10.0.0.53:53/udp']\nremote-forward: 2222:localhost:22\n", nil, "configuration OK", 0},
		{"unknown key", good + "sever: x\n", nil, `unknown setting "sever"`, exitConfig},
		{"syntax", "server: [x\n", nil, "YAML syntax error at line 1", exitConfig},
		{"wrong type", good + "max-connections: many\n", nil, "max-connections", exitConfig},
		{"list for a string", good + "proxy-user: [a, b]\n", nil, "proxy-user must be a single value", exitConfig},
		{"duplicate key", good + "user: v\n", nil, "YAML syntax error at line 5", exitConfig},
		{"no psk", "server: 192.0.2.1\nuser: u\npassword: pw\n", nil, "no IPsec pre-shared key", exitConfig},
		{"bad server port", "server: 192.0.2.1:0\npsk: p\nuser: u\npassword: pw\n", nil, `bad server port "0"`, exitConfig},
		{"bad route", good + "route: 10.0.0.0/33\n", nil, "is not a CIDR", exitConfig},
		{"bad pfs", good + "pfs: maybe\n", nil, "--pfs must be auto", exitConfig},
		{"bad forward", good + "local-forward: 80:web\n", nil, "bad port forward: -L \"80:web\"", exitConfig},
		{"open socks5", good + "socks5: 0.0.0.0:1080\n", nil, "is not a loopback address", exitConfig},
		{"open forward", good + "local-forward: 0.0.0.0:8080:web:80\n", nil, "needs --insecure-open-proxy", exitConfig},
		{"open forward allowed", good + "local-forward: 0.0.0.0:8080:web:80\ninsecure-open-proxy: true\n", nil, "configuration OK", 0},
		{"flag fixes file", "server: 192.0.2.1\nuser: u\npassword: pw\n", []string{"--psk", "p"}, "configuration OK", 0},
		{"missing file", "", []string{"--config", "/nonexistent/l2tpproxy.yaml"}, "cannot read --config", exitConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"up", "--config", writeFile(t, "c.yaml", tc.file), "--check-config"}
			args = append(args, tc.args...)
			start := time.Now()
			code, out, errs := runCapture(t, args...)
			got := errs
			if tc.code == 0 {
				got = out
			}
			if code != tc.code || strings.Count(got, "\n") != 1 || !strings.Contains(got, tc.want) {
				t.Errorf("code %d, stdout %q, stderr %q; want %d and one line with %q", code, out, errs, tc.code, tc.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v: did it connect?", d)
			}
		})
	}
}

// TestEveryFlagConfigurable: every flag of up and exec can be set from
// the file (a flag type configurable does not know would be left out).
func TestEveryFlagConfigurable(t *testing.T) {
	for _, cmd := range newApp().Commands {
		if cmd.Name != "up" && cmd.Name != "exec" {
			continue
		}
		for _, f := range cmd.Flags {
			if n := flagName(f); n == flagConfig || n == flagPrintConfig || n == flagCheckConfig {
				continue
			}
			if _, ok := f.(altsrc.FlagInputSourceExtension); !ok {
				t.Errorf("%s --%s (%T) cannot be set from the configuration file", cmd.Name, flagName(f), f)
			}
		}
	}
}

func TestIsSecret(t *testing.T) {
	for name, want := range map[string]bool{
		"psk": true, "password": true, "proxy-password": true, "admin-password": true, "api-token": true,
		"psk-file": false, "password-file": false, "proxy-password-file": false, "user": false, "server": false,
	} {
		if got := isSecret(name); got != want {
			t.Errorf("isSecret(%q) = %v", name, got)
		}
	}
}

// TestConfigExposedSecretWarning: a secret written out in a file others may
// read gets one warning line (naming the key, never the value); a $VAR or
// a private file gets none.
func TestConfigExposedSecretWarning(t *testing.T) {
	for _, tc := range []struct {
		text string
		mode os.FileMode
		warn string
	}{
		{"psk: sEcReT\n", 0o644, "holds psk and others may read it"},
		{"tunnels:\n  - {server: x, route: 10.0.0.0/8, password: sEcReT}\n", 0o640, "holds tunnels[0].password"},
		{"psk: sEcReT\n", 0o600, ""},
		{"psk: $T_SOME_PSK\n", 0o644, ""},
		{"psk-file: /etc/psk\n", 0o644, ""},
	} {
		f := writeFile(t, "c.yaml", tc.text)
		os.Chmod(f, tc.mode)
		t.Setenv("T_SOME_PSK", "x")
		_, _, errs := runCapture(t, "up", "--config", f, "--print-config")
		if strings.Contains(errs, "sEcReT") || tc.warn == "" && strings.Contains(errs, "warning") || tc.warn != "" && !strings.Contains(errs, tc.warn) {
			t.Errorf("%q mode %o: stderr %q, want %q", tc.text, tc.mode, errs, tc.warn)
		}
	}
}
