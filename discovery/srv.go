package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// SRVService is the SRV service name for scheme ("https" or "http") of
// the base service ("etcd-server", "etcd-client"): "-ssl" is appended for
// https, then "-<suffix>" when suffix (--discovery-srv-name) is not empty.
func SRVService(base, suffix, scheme string) string {
	if scheme == "https" {
		base += "-ssl"
	}
	if suffix != "" {
		base += "-" + suffix
	}
	return base
}

// SRVCluster returns the initial cluster that the DNS SRV records of
// domain describe, as "name=url" entries: the https peers of
// _etcd-server-ssl[-suffix]._tcp.<domain> followed by the http peers of
// _etcd-server[-suffix]._tcp.<domain>. The entry whose target resolves to
// the address of one of advertisePeerURLs is named name; the others are
// named "0", "1", ... in order (each member names only itself; the names
// are corrected when the members publish theirs). URLs keep the targets'
// names, without their final dot.
//
// Either service may be missing: the error joins the failures of both, and
// discovery has failed only when no entry is returned. Finding this member
// among the entries is the caller's check.
func SRVCluster(ctx context.Context, r *net.Resolver, lg *zap.Logger, name, domain, suffix string, advertisePeerURLs []url.URL) ([]string, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	apurls := make([]string, len(advertisePeerURLs))
	for i, u := range advertisePeerURLs {
		apurls[i] = u.String()
	}
	https := SRVService("etcd-server", suffix, "https")
	found, httpsErr := srvCluster(ctx, r, "https", https, name, domain, advertisePeerURLs)
	if httpsErr != nil {
		found = nil
	}
	lg.Info("get cluster for etcd-server-ssl SRV", zap.String("service-scheme", "https"), zap.String("service-name", https),
		zap.String("server-name", name), zap.String("discovery-srv", domain), zap.Strings("advertise-peer-urls", apurls),
		zap.Strings("found-cluster", found), zap.Error(httpsErr))

	http := SRVService("etcd-server", suffix, "http")
	plain, httpErr := srvCluster(ctx, r, "http", http, name, domain, advertisePeerURLs)
	if httpErr == nil {
		found = append(found, plain...)
	}
	lg.Info("get cluster for etcd-server SRV", zap.String("service-scheme", "http"), zap.String("service-name", http),
		zap.String("server-name", name), zap.String("discovery-srv", domain), zap.Strings("advertise-peer-urls", apurls),
		zap.Strings("found-cluster", found), zap.Error(httpErr))
	return found, errors.Join(httpsErr, httpErr)
}

// srvCluster is the entries of one service. A target that does not resolve
// is skipped, and so is this member's entry when its scheme differs from
// the advertised URL's; the last such problem is the error when no entry is
// left. Temporary names restart at 0 for each service, as in etcd.
func srvCluster(ctx context.Context, r *net.Resolver, scheme, service, name, domain string, apurls []url.URL) ([]string, error) {
	self := make(map[string]url.URL, len(apurls))
	for _, u := range apurls {
		addr, err := resolveTCPAddr(ctx, r, u.Host)
		if err != nil {
			return nil, err
		}
		self[addr] = u
	}
	_, records, err := r.LookupSRV(ctx, service, "tcp", domain)
	if err != nil {
		return nil, fmt.Errorf("error querying DNS SRV records for _%s %w", service, err)
	}
	var entries []string
	tempName := 0
	for _, rec := range records {
		port := strconv.Itoa(int(rec.Port))
		addr, rerr := resolveTCPAddr(ctx, r, net.JoinHostPort(rec.Target, port))
		if rerr != nil {
			err = rerr
			continue
		}
		n := ""
		u, isSelf := self[addr]
		if isSelf {
			n = name
		}
		if n == "" {
			n = strconv.Itoa(tempName)
			tempName++
		}
		host := net.JoinHostPort(strings.TrimSuffix(rec.Target, "."), port)
		if isSelf && u.Scheme != scheme {
			err = fmt.Errorf("bootstrap at %s from DNS for %s has scheme mismatch with expected peer %s", scheme+"://"+host, service, u.String())
			continue
		}
		entries = append(entries, n+"="+scheme+"://"+host)
	}
	if len(entries) == 0 {
		if err == nil {
			// No record at all: etcd reports no error for the service
			// either, and fails later for want of this member.
			return nil, nil
		}
		return nil, fmt.Errorf("error querying DNS SRV records for _%s %w", service, err)
	}
	return entries, nil
}

// resolveTCPAddr resolves host:port to one address as Go's
// net.ResolveTCPAddr does (the first IPv4 address, else the first), but
// with r, and returns it in net.TCPAddr's form.
func resolveTCPAddr(ctx context.Context, r *net.Resolver, hostport string) (string, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	port, err := r.LookupPort(ctx, "tcp", portStr)
	if err != nil {
		return "", err
	}
	var ip net.IP
	var zone string
	if parsed := net.ParseIP(host); parsed != nil {
		ip = parsed
	} else if host == "" {
		ip = nil
	} else {
		addrs, err := r.LookupIPAddr(ctx, host)
		if err != nil {
			return "", err
		}
		if len(addrs) == 0 {
			return "", &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		ip, zone = addrs[0].IP, addrs[0].Zone
		for _, a := range addrs {
			if a.IP.To4() != nil {
				ip, zone = a.IP, a.Zone
				break
			}
		}
	}
	return (&net.TCPAddr{IP: ip, Port: port, Zone: zone}).String(), nil
}
