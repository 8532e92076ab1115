// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"strings"
	"time"

	"pamtotp/internal/directory"
	"pamtotp/internal/options"
)

// checkDirectory checks a host's directory configuration: the file, and
// for each server the connection, TLS and the bind, the schema, whether
// an anonymous client can read a secret, and, given a user, whether this
// host can read and write what a login needs. Each file is checked once.
func (d *doctor) checkDirectory(conf, user string) {
	if d.directories == nil {
		d.directories = map[string]bool{}
	}
	if d.directories[conf] {
		return
	}
	d.directories[conf] = true
	c, err := directory.Load(conf)
	if err != nil {
		d.add("error", conf, fmt.Sprintf("the directory's configuration is refused (%v): every login with directory=%s fails.", err, conf),
			"correct it: root's, mode 0600, the keys of docs/fleet.md")
		return
	}
	reachable, writers := 0, 0
	var servers []directory.Server
	for _, u := range c.URIs {
		where := conf + ": " + u.String()
		one := c.Only(u)
		srv := directory.Describe(one)
		servers = append(servers, srv)
		if !srv.Reachable {
			d.findings = append(d.findings, finding{Level: "warning", Where: where, What: fmt.Sprintf("cannot connect, check TLS and bind as this host: %s.", srv.Error),
				Fix: "check the server, ca_file and the host's certificate or bind_dn", Server: &srv})
			continue
		}
		reachable++
		writes := "takes writes"
		switch {
		case srv.Writes:
			writers++
		case srv.Referral != "":
			writes = "read-only, refers writes to " + srv.Referral
		default:
			writes = "read-only, and refers writes nowhere"
		}
		d.findings = append(d.findings, finding{Level: "note", Where: where, What: fmt.Sprintf("reachable, TLS and bind as this host work; %s; contextCSN %s.",
			writes, strings.Join(srv.ContextCSN, " ")), Server: &srv})
		if srv.SchemaError != "" {
			d.add("warning", where, fmt.Sprintf("cannot read the schema: %s.", srv.SchemaError), "check the server's ACL on the subschema entry")
			continue
		}
		if !srv.Schema {
			d.add("error", where, "pam_totp's schema is not loaded: logins fail closed (no entry matches).",
				"load pam-totp.ldif (cn=config) or include pam-totp.schema (slapd.conf)")
		}
		if n, err := directory.AnonymousSecrets(one); err != nil {
			d.add("note", where, fmt.Sprintf("anonymous access not checked: %v.", err), "")
		} else if n > 0 {
			d.add("error", where, fmt.Sprintf("an anonymous client can read or find pam_totp's attributes of %d entries: anyone can make their codes.", n),
				"put the example ACL (pam-totp-acl.conf) before the site's own rules")
		}
	}
	for _, b := range directory.Behind(servers, time.Now(), 5*time.Second) {
		d.add("warning", conf, b+": the servers disagree, so a code used on one may work on the other until replication catches up.",
			"check replication (syncrepl) between the servers: slapd's log, the network between them")
	}
	if reachable > 0 && writers == 0 {
		d.add("error", conf, "no reachable server takes writes: every login fails closed (it cannot record a code).",
			"list a server that takes writes in uri")
	}
	if reachable == 0 {
		d.add("error", conf, "no server in uri could be reached: every login with directory= fails (fallback=local: only local break-glass enrollments work).",
			"start the directory server, or correct uri")
		return
	}
	if user == "" {
		d.add("note", conf, "this host's access to an entry was not checked.", "give --user NAME of an enrolled user")
		return
	}
	a := directory.New(c, user)
	defer a.Close()
	if err := a.CheckAccess(); err != nil {
		d.add("error", conf, fmt.Sprintf("this host cannot do what a login of %s needs: %v.", user, err),
			"check the ACL: the hosts' group reads pamTOTPSecret and writes pamTOTPState (docs/fleet.md)")
	}
}

// checkDirectoryStack is checkAccounts for a module line with directory=:
// the accounts are the directory's, so what can be checked here is the
// configuration and the way in when the directory is down.
func (d *doctor) checkDirectoryStack(service, where string, opts *options.Options) {
	d.checkDirectory(opts.Directory, "")
	accounts, err := localAccounts()
	if err != nil {
		return
	}
	for _, a := range accounts {
		if a.uid != 0 {
			continue
		}
		exempt := inGroup(a.name, opts.ExemptGroup)
		_, _, _, found, err := enrollmentOf(a, opts)
		d.rootEnrolled[service] = exempt || found && err == nil
		switch {
		case exempt:
		case !opts.FallbackLocal:
			d.add("warning", where, fmt.Sprintf("directory= without fallback=local: while the directory is down nobody, root included, logs in through %s.", service),
				"add fallback=local secret=/var/lib/pam-totp/%u and give root a local enrollment there (docs/fleet.md)")
		case !found || err != nil:
			reason := "has none"
			if err != nil {
				reason = strings.TrimSuffix(err.Error(), ".")
			}
			d.add("warning", where, fmt.Sprintf("root's local break-glass enrollment for fallback=local %s: while the directory is down root cannot log in through %s.", reason, service),
				"totp-enroll --user root --secret-file "+opts.Secret)
		}
	}
}
