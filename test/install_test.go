// SPDX-License-Identifier: Apache-2.0

package test

import (
	"io/fs"
	"os/exec"
	"path/filepath"
	"testing"
)

// make uninstall removes every file make install put there.
func TestInstallUninstall(t *testing.T) {
	needRoot(t, "make")
	dest := t.TempDir()
	files := func() []string {
		var out []string
		filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				out = append(out, p)
			}
			return nil
		})
		return out
	}
	if out, err := exec.Command("make", "-C", "..", "-s", "install", "DESTDIR="+dest).CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	if n := len(files()); n < 8 {
		t.Fatalf("make install put %d files, want the module, both checkers, totp-enroll, the man pages, the completion and the schema", n)
	}
	if out, err := exec.Command("make", "-C", "..", "-s", "uninstall", "DESTDIR="+dest).CombinedOutput(); err != nil {
		t.Fatalf("make uninstall: %v\n%s", err, out)
	}
	if left := files(); len(left) > 0 {
		t.Fatalf("make uninstall left %v", left)
	}
}
