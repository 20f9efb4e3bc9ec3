package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestGroupHelp checks that --help, -h and help on every command group
// print its usage (each listed subcommand with its summary, an example)
// and exit 0, and that no subcommand or an unknown one is a usage error.
func TestGroupHelp(t *testing.T) {
	groups := 0
	for _, c := range commands() {
		if c.group == nil {
			continue
		}
		groups++
		if c.group.name != c.name {
			t.Errorf("command %s: its group is named %q", c.name, c.group.name)
		}
		for _, help := range []string{"--help", "-h", "help"} {
			t.Run(c.name+" "+help, func(t *testing.T) {
				var out, errOut bytes.Buffer
				if code := Main([]string{c.name, help}, &out, &errOut); code != 0 {
					t.Fatalf("exit %d, want 0: %s", code, errOut.String())
				}
				text := out.String()
				for _, want := range []string{"Usage: skiff " + c.name, "Subcommands:", "Example:\n  skiff " + c.name + " "} {
					if !strings.Contains(text, want) {
						t.Errorf("help lacks %q:\n%s", want, text)
					}
				}
				for _, s := range c.group.subs {
					line := s.name + " " // the name, padded, then the summary
					if s.hidden {
						if strings.Contains(text, "  "+line) {
							t.Errorf("help lists the hidden subcommand %s:\n%s", s.name, text)
						}
						continue
					}
					if s.summary == "" || !strings.Contains(text, "  "+line) || !strings.Contains(text, s.summary) {
						t.Errorf("help lacks the line of subcommand %s (%q):\n%s", s.name, s.summary, text)
					}
				}
			})
		}
		for _, args := range [][]string{{c.name}, {c.name, "no-such-subcommand"}} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var out, errOut bytes.Buffer
				if code := Main(args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "Run 'skiff "+c.name+" --help'") {
					t.Errorf("exit %d, want 2 with a hint at --help: %s", code, errOut.String())
				}
			})
		}
	}
	if groups < 4 { // lab, token, images, bench
		t.Errorf("%d command groups, want at least 4", groups)
	}
}
