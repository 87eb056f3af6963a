package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// checkHostName accepts a bare host name or IP address for listen_hosts.
func checkHostName(h string) error {
	switch {
	case h == "":
		return fmt.Errorf("an empty name is not a host")
	case strings.ContainsAny(h, " /\\@"), strings.ContainsFunc(h, func(r rune) bool { return r < ' ' || r >= 0x7f }):
		return fmt.Errorf("%q is not a host name", h)
	}
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return nil
	}
	if strings.Contains(h, ":") {
		return fmt.Errorf("%q: give the host name without a port", h)
	}
	return nil
}

// checkOrigin accepts a web origin as browsers send it in the Origin header:
// scheme://host[:port], nothing after.
func checkOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an origin; write it as a browser sends it, such as https://ops.example.com or http://localhost:3000", o)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: an origin is scheme://host[:port] only, without a path, query or user", o)
	}
	return nil
}

// NormalizeOrigin returns the form of an allowed_origins entry that is
// compared with a request's Origin header.
func NormalizeOrigin(o string) string {
	return strings.TrimSuffix(strings.ToLower(o), "/")
}

// CheckCleartext refuses an http:// URL whose host is not this machine: the
// backend's API key would cross the network in clear.
func CheckCleartext(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return nil // checkURL reports malformed URLs; https is fine
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Unmap().IsLoopback() {
		return nil
	}
	return fmt.Errorf("%s is plain http to a host off this machine: the API key would travel in clear; use https", raw)
}

// AddrIsLoopback reports whether a bound address (a listener's Addr) only
// accepts connections from this machine. It is the check that counts:
// "localhost" in config.yaml means whatever it resolved to when the socket
// was bound.
func AddrIsLoopback(a net.Addr) bool {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.IsLoopback()
	}
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}
