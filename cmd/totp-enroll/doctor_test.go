// SPDX-License-Identifier: Apache-2.0

package main

import "testing"

// keyAlone reads AuthenticationMethods as sshd -T prints it: lists
// separated by spaces, methods by commas, a method's submethod after ':'.
func TestKeyAlone(t *testing.T) {
	tests := []struct {
		methods string
		want    bool
	}{
		{"", true},
		{"any", true},
		{"publickey", true},
		{"publickey,keyboard-interactive", false},
		{"publickey,keyboard-interactive:pam", false},
		{"keyboard-interactive", false},
		{"publickey,keyboard-interactive password", false},
		{"publickey,keyboard-interactive publickey", true},
		{"publickey,password", false},
		{"publickey,hostbased", true},
		{"publickeys,keyboard-interactive", false},
	}
	for _, tt := range tests {
		if got := keyAlone(tt.methods); got != tt.want {
			t.Errorf("keyAlone(%q) = %v, want %v", tt.methods, got, tt.want)
		}
	}
}
