// SPDX-License-Identifier: Apache-2.0

// The commands for a user's own tokens: list, remove, disable, enable (and
// add, which is enrollment's, in main.go).
package main

import (
	"fmt"
	"io"
	"pamtotp/internal/secret"
	"time"
)

func listTokens(t *target, _ []string, out io.Writer) error {
	f, st, err := t.read()
	if err != nil {
		return err
	}
	for i := range f.Tokens {
		tok := &f.Tokens[i]
		state := "enabled"
		switch now := time.Now().Unix(); {
		case tok.Disabled:
			state = "disabled"
		case tok.ValidUntil != 0 && now >= tok.ValidUntil:
			state = "expired"
		case now < tok.ValidFrom:
			state = "not yet"
		}
		fmt.Fprintf(out, "%-20s %-8s %-32s last used %s", tok.Name, state, tok.Describe(), when(st.Token(tok).At))
		if v := tok.Validity(); v != "" {
			fmt.Fprintf(out, ", %s", v)
		}
		if tok.Comment != "" {
			fmt.Fprintf(out, "  # %s", tok.Comment)
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "scratch codes left: %d, admin passcodes left: %d\n",
		unused(f.Scratch, st), unused(f.Passcodes, st))
	return nil
}

// removeToken removes pos[0]; the last token stays (reset removes all).
func removeToken(t *target, pos []string, out io.Writer) error {
	return t.updateAndSay(out, func(f *secret.File, _ *secret.State, out io.Writer) error {
		if _, err := tokenNamed(f, pos[0]); err != nil {
			return err
		}
		if len(f.Tokens) == 1 {
			return fmt.Errorf("%s is the last token: use reset to remove the enrollment", pos[0])
		}
		for i := range f.Tokens {
			if f.Tokens[i].Name == pos[0] {
				f.Tokens = append(f.Tokens[:i:i], f.Tokens[i+1:]...)
				break
			}
		}
		fmt.Fprintf(out, "%s: token %s removed\n", t.acct.name, pos[0])
		return nil
	})
}

func setDisabled(disabled bool) func(t *target, pos []string, out io.Writer) error {
	return func(t *target, pos []string, out io.Writer) error {
		return t.updateAndSay(out, func(f *secret.File, _ *secret.State, out io.Writer) error {
			tok, err := tokenNamed(f, pos[0])
			if err != nil {
				return err
			}
			tok.Disabled = disabled
			word := map[bool]string{true: "disabled", false: "enabled"}[disabled]
			fmt.Fprintf(out, "%s: token %s %s\n", t.acct.name, tok.Name, word)
			return nil
		})
	}
}

func tokenNamed(f *secret.File, name string) (*secret.Token, error) {
	t := f.Token(name)
	if t == nil {
		return nil, fmt.Errorf("no token %q", name)
	}
	return t, nil
}

func unused(codes []string, st *secret.State) int {
	n := 0
	for _, c := range codes {
		if !st.ScratchIsUsed(c) {
			n++
		}
	}
	return n
}

func when(unix int64) string {
	if unix == 0 {
		return "never"
	}
	return time.Unix(unix, 0).UTC().Format("2006-01-02 15:04:05 UTC")
}
