// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"time"

	"pamtotp/internal/directory"
	"pamtotp/internal/options"
	"pamtotp/internal/protocol"
	"pamtotp/internal/relay"
	"pamtotp/internal/secret"
)

// checkDirectory checks a host's directory configuration: the file, and
// for each server the connection, TLS and the bind, the schema, whether
// an anonymous client can read a secret, and, given a user, whether this
// host can read and write what a login needs. Each file is checked once;
// the configuration is returned, nil if it is refused.
func (d *doctor) checkDirectory(conf, user string) *directory.Config {
	if d.directories == nil {
		d.directories = map[string]*directory.Config{}
	}
	if c, checked := d.directories[conf]; checked {
		return c
	}
	d.directories[conf] = nil
	c, err := directory.Load(conf)
	if err != nil {
		d.add("error", conf, fmt.Sprintf("the directory's configuration is refused (%v): every login with directory=%s fails.", err, conf),
			"correct it: root's, mode 0600, the keys of docs/fleet.md")
		return nil
	}
	d.directories[conf] = c
	if len(c.Verifiers) > 0 {
		d.checkVerifiers(conf, user)
		return c
	}
	d.checkServers(c, conf, user)
	return c
}

// checkVerifiers is checkDirectory for a host whose configuration names
// verifiers: each verifier, reached over TLS with this host's certificate,
// is asked whether it takes this host and can read NAME's entry (root's
// without --user). Nothing is written and no code is asked; the
// verifier logs the probe.
func (d *doctor) checkVerifiers(conf, name string) {
	if name == "" {
		name = "root"
	}
	req := protocol.Req{User: name, Service: "totp-enroll-doctor"}
	if u, err := user.Lookup(name); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		req.Known, req.UID, req.GID, req.Home = true, uid, gid, u.HomeDir
	}
	results, err := relay.Probe(conf, req)
	if err != nil {
		d.add("error", conf, fmt.Sprintf("the configuration is refused: %v.", err), "correct it (docs/fleet.md)")
		return
	}
	read := 0
	for _, r := range results {
		where := conf + ": verifier " + r.Verifier
		switch {
		case r.Read:
			read++
			d.add("note", where, fmt.Sprintf("reachable; TLS works both ways; it takes this host, and read %s's entry.", name), "")
		case r.Accepted:
			d.add("warning", where, fmt.Sprintf("takes this host, but %s.", r.Error),
				"check the verifier's own access to the directory: pam-totp-verifier --check on that server")
		default:
			d.add("warning", where, r.Error+".",
				"check that it runs and this host reaches it, ca_file against its certificate, and that this host's certificate is of the verifiers' ca_file and its name in their hosts_group")
		}
	}
	if read == 0 {
		d.add("error", conf, "no verifier took this host and read an entry: every login with directory= fails closed (fallback=local: only local break-glass enrollments work).",
			"see the verifiers' lines above")
	}
}

// checkServers is checkDirectory for a configuration that loaded.
func (d *doctor) checkServers(c *directory.Config, conf, user string) {
	reachable, writers, refused := 0, 0, 0
	var servers []directory.Server
	for _, u := range c.URIs {
		where := conf + ": " + u.String()
		one := c.Only(u)
		srv := directory.Describe(one)
		servers = append(servers, srv)
		if !srv.Reachable && srv.Silent {
			d.findings = append(d.findings, finding{Level: "warning", Where: where, What: fmt.Sprintf("cannot be reached: %s.", srv.Error),
				Fix: "check that the server runs and that this host reaches it (uri, the network, a firewall)", Server: &srv})
			continue
		}
		if !srv.Reachable {
			refused++
			d.findings = append(d.findings, finding{Level: "warning", Where: where, What: fmt.Sprintf("answers, but TLS or the bind as this host failed: %s.", srv.Error),
				Fix: "check ca_file, the server's certificate and name (tls_server_name), and the host's certificate or bind_dn", Server: &srv})
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
		groups := "in no group"
		if len(srv.Groups) > 0 {
			groups = "member of " + strings.Join(srv.Groups, "; ")
		}
		d.findings = append(d.findings, finding{Level: "note", Where: where, What: fmt.Sprintf("reachable, TLS and bind as this host work (bound as %s, %s); %s; contextCSN %s.",
			orNone(srv.BoundAs), groups, writes, strings.Join(srv.ContextCSN, " ")), Server: &srv})
		if srv.BoundAs != "" && len(srv.Groups) == 0 {
			d.add("warning", where, fmt.Sprintf("this host is bound as %s, which no group lists: the example ACL gives hosts their rights through the hosts' group (cn=pam-totp-hosts), so logins will find no entry they may read.", srv.BoundAs),
				"add it: member: "+srv.BoundAs+" in the hosts' group (docs/fleet.md)")
		}
		if srv.SchemaError != "" {
			d.add("warning", where, fmt.Sprintf("cannot read the schema: %s.", srv.SchemaError), "check the server's ACL on the subschema entry")
			continue
		}
		if !srv.Schema {
			d.add("error", where, "pam_totp's schema is not loaded: logins fail closed (no entry matches).",
				"load pam-totp.ldif (cn=config) or include pam-totp.schema (slapd.conf)")
		} else if !srv.Records {
			d.add("warning", where, "pam_totp's schema is of an older version, without state records: logins work, but where two servers take writes, a healed partition can erase a used code, a lock or wrong codes.",
				"upgrade the schema and the ACL on every server (docs/fleet.md, Upgrading)")
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
	if reachable == 0 && refused > 0 {
		d.add("error", conf, "no server in uri accepted this host: TLS or the bind failed, so every login with directory= fails, and fallback=local does not apply (it bypasses only a directory that cannot be reached).",
			"correct ca_file, the certificates or bind_dn as the servers' lines say")
		return
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
	switch err := a.CheckAccess(); {
	case errors.Is(err, secret.ErrNotEnrolled):
		d.add("note", conf, fmt.Sprintf("%s is not enrolled in the directory: this host reads the entry; the write a login makes is checked once %s is enrolled.", user, user), "")
	case err != nil:
		d.add("error", conf, fmt.Sprintf("this host (%s) cannot do what a login of %s needs: %v.", c.Identity(), user, err),
			"check the ACL: the hosts' group reads pamTOTPSecret and writes pamTOTPState, and this host is a member (docs/fleet.md)")
	}
}

// checkDirectoryStack is checkAccounts for a module line with directory=:
// the accounts are the directory's, so what can be checked here is the
// configuration and the way in when the directory is down.
func (d *doctor) checkDirectoryStack(service, where string, opts *options.Options) {
	c := d.checkDirectory(opts.Directory, "")
	accounts, err := localAccounts()
	if err != nil {
		return
	}
	if c != nil {
		if opts.FallbackLocal {
			d.checkBreakGlassStore(c, where, opts, accounts)
		}
		d.checkConnectBudget(c, where, opts)
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

func orNone(s string) string {
	if s == "" {
		return "(the server did not say)"
	}
	return s
}

// checkBreakGlassStore: the fallback=local store is for break-glass
// enrollments (root's). An enrollment there of a user whom the directory
// also has (a token since removed from the directory, a lost phone, left
// by a migration) opens that account whenever the directory cannot be
// reached.
func (d *doctor) checkBreakGlassStore(c *directory.Config, where string, opts *options.Options, accounts []*account) {
	var both []string
	for _, a := range accounts {
		if _, _, _, found, _ := enrollmentOf(a, opts); !found {
			continue
		}
		acct := directory.New(c, a.name)
		_, _, err := acct.Enrollment()
		acct.Close()
		if err == nil || errors.Is(err, secret.ErrNotEnrolled) {
			both = append(both, a.name)
		}
	}
	if len(both) > 0 {
		d.add("warning", where, fmt.Sprintf("the fallback=local store %s holds enrollments of users the directory also has: %s. While the directory cannot be reached, those local tokens (perhaps ones removed from the directory) open the accounts.",
			opts.Secret, nameList(both)), "keep only break-glass enrollments (root's) there; remove the others from the store")
	}
}

// checkConnectBudget: a login connects to the servers of uri in turn, all
// within the module's timeout= less 2 s for fallback=local and the prompt.
// A per-server timeout that cannot fit fails every login; one that fits
// fewer servers than uri names leaves the later ones untried when the
// earlier are silent.
func (d *doctor) checkConnectBudget(c *directory.Config, where string, opts *options.Options) {
	budget := opts.ConnectBudget()
	switch {
	case c.Timeout > budget:
		d.add("error", where, fmt.Sprintf("the directory's timeout (%s) does not fit in the module's timeout=%d with 2 s for fallback=local and the prompt: every login fails.", c.Timeout, opts.Timeout),
			fmt.Sprintf("lower timeout in %s, or raise the module's timeout=", opts.Directory))
	case time.Duration(len(c.URIs))*c.Timeout > budget:
		d.add("note", where, fmt.Sprintf("connecting has %s in all (the module's timeout=%d less 2 s): if the first servers of uri accept and then stay silent, the last of the %d are not tried, and the login goes on as for a directory that cannot be reached.", budget, opts.Timeout, len(c.URIs)),
			"lower timeout, or put the servers most likely to answer first")
	}
}
