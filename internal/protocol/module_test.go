// SPDX-License-Identifier: Apache-2.0

package protocol

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The C module names the frame types in an enum; this side in constants.
// Both lists must hold the same names with the same bytes.
func TestFrameTypesAgreeWithTheModule(t *testing.T) {
	src, err := os.ReadFile("../../pam_totp/pam_totp.h")
	if err != nil {
		t.Fatal(err)
	}
	enum := regexp.MustCompile(`(?s)enum frame_type \{(.*?)\};`).FindSubmatch(src)
	if enum == nil {
		t.Fatal("no enum frame_type in pam_totp.h")
	}
	inC := map[string]Type{}
	for _, m := range regexp.MustCompile(`FRAME_(\w+) = '(.)'`).FindAllStringSubmatch(string(enum[1]), -1) {
		var name strings.Builder
		for _, w := range strings.Split(m[1], "_") {
			name.WriteString(w[:1] + strings.ToLower(w[1:]))
		}
		inC[name.String()] = Type(m[2][0])
	}
	inGo := map[string]Type{
		"Request": Request, "Answer": Answer, "ConvFailed": ConvFailed,
		"PromptEchoOff": PromptEchoOff, "PromptEchoOn": PromptEchoOn, "Info": Info, "Error": Error,
		"SetAuthtok": SetAuthtok, "Pending": Pending, "Verdict": Verdict, "Decline": Decline,
	}
	for name, v := range inGo {
		if c, ok := inC[name]; !ok || c != v {
			t.Errorf("%s: Go %q, C %q (present %v)", name, v, c, ok)
		}
	}
	for name := range inC {
		if _, ok := inGo[name]; !ok {
			t.Errorf("the module has FRAME_%s, which this package lacks", name)
		}
	}
}
