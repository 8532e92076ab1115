// SPDX-License-Identifier: Apache-2.0

// Command pam-totp-verifier decides the logins of hosts that hold no key
// to the directory: it runs beside slapd, is the one identity that reads
// the secrets, and serves hosts over mutual TLS. See
// pam-totp-verifier(8), docs/fleet.md and internal/verifier.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"pamtotp/internal/authlog"
	"pamtotp/internal/directory"
	"pamtotp/internal/verifier"
)

func main() {
	confPath := flag.String("config", verifier.DefaultConfig, "the configuration file")
	check := flag.Bool("check", false, "check the configuration, its files and the directory as the verifier finds it, and exit")
	checkUser := flag.String("user", "", "with --check: also read this user's entry, as a login would")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: pam-totp-verifier [--config FILE] [--check [--user NAME]]   (see pam-totp-verifier(8))")
	}
	flag.Parse()
	if flag.NArg() != 0 || *checkUser != "" && !*check {
		flag.Usage()
		os.Exit(2)
	}
	// No core file may hold a secret; nothing it makes is anyone else's.
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	unix.Umask(0o077)
	if err := dropRoot(); err != nil {
		fail(err)
	}
	conf, err := verifier.LoadConfig(*confPath)
	if err != nil {
		fail(err)
	}
	log := authlog.Open("pam_totp")
	metrics := verifier.NewMetrics()
	pool := directory.NewPool()
	srv, err := verifier.NewServer(conf, log, pool.Open, metrics)
	if err != nil {
		fail(err)
	}
	if *check {
		fmt.Printf("ok: %s and the files it names are in order\n", *confPath)
		lines, ok := conf.Check(*checkUser, pool.Open)
		for _, l := range lines {
			fmt.Println(l)
		}
		if !ok {
			os.Exit(1)
		}
		return
	}
	ln, err := net.Listen("tcp", conf.Listen)
	if err != nil {
		fail(err)
	}
	if conf.Metrics != "" {
		mln, err := net.Listen("tcp", conf.Metrics)
		if err != nil {
			fail(fmt.Errorf("metrics: %w", err))
		}
		metrics.CountLocked(func() (int, error) { return countLocked(pool, srv.Config().Directory, log) })
		go metrics.ServeMetrics(mln)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		ln.Close() // Serve then waits for the logins under way
		srv.Stop()
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			reload(srv, *confPath, log)
		}
	}()
	log.Info(fmt.Sprintf("pam-totp-verifier: serving hosts on %s", ln.Addr()))
	if err := srv.Serve(ln); err != nil {
		fail(err)
	}
}

// reload puts the configuration at path in force (systemctl reload), or
// keeps the one in force when it is not sound, and logs which.
func reload(srv *verifier.Server, path string, log *authlog.Writer) {
	changed, err := srv.Reload(path)
	if err != nil {
		log.Warning(fmt.Sprintf("pam-totp-verifier: keeping the configuration in force: %v", err))
		return
	}
	msg := "pam-totp-verifier: read " + path + " again"
	if len(changed) > 0 {
		msg += "; " + strings.Join(changed, ", ") + " take a restart"
	}
	log.Info(msg)
}

// countLocked counts the users locked now in the verifier's directory,
// for the metrics, and logs why when it cannot.
func countLocked(pool *directory.Pool, conf string, log *authlog.Writer) (int, error) {
	c, err := pool.Config(conf)
	if err == nil {
		a := directory.New(c, "")
		defer a.Close()
		var n int
		if n, err = a.Locked(time.Now().Unix()); err == nil {
			return n, nil
		}
	}
	log.Warning(fmt.Sprintf("pam-totp-verifier: metrics: cannot count the locked users: %v", err))
	return 0, err
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pam-totp-verifier:", err)
	os.Exit(1)
}

// User is the account the verifier runs as. Started as root (by hand, or
// --check from a root shell), it becomes that user before it reads a
// file: it never holds more than its user may, and an admin's --check
// reads the files as the service will.
const User = "pam-totp-verifier"

func dropRoot() error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(User)
	if err != nil {
		return fmt.Errorf("started as root, and there is no user %s to run as (the package makes it): %w", User, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil || uid == 0 || gid == 0 {
		return fmt.Errorf("user %s: not a user of its own (uid %s, gid %s)", User, u.Uid, u.Gid)
	}
	// Go's Setgroups, Setgid and Setuid apply to every thread.
	if err := syscall.Setgroups(nil); err != nil {
		return err
	}
	if err := syscall.Setgid(gid); err != nil {
		return err
	}
	return syscall.Setuid(uid)
}
