package main

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
)

// Etcd is the embedded etcd member kube-apiserver stores into.
type Etcd struct {
	server *embed.Etcd
	client *clientv3.Client
	// URL is the client URL (plain HTTP on loopback).
	URL string
}

// startEtcd starts a single-member etcd with its data in dir, listening on loopback.
func startEtcd(dir string, clientPort, peerPort int, timeout time.Duration) (*Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "sidecar-watch-harness"
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	// A test control plane: losing the last writes in a power cut is fine, waiting for
	// fsync on every write is not (it dominates a write on a shared disk).
	cfg.UnsafeNoFsync = true
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	server, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd (client %s, peer %s): %w", clientURL.Host, peerURL.Host, err)
	}
	select {
	case <-server.Server.ReadyNotify():
	case err := <-server.Err():
		server.Close()
		return nil, fmt.Errorf("start etcd: %w", err)
	case <-time.After(timeout):
		server.Close()
		return nil, fmt.Errorf("start etcd: not ready within %s (log: %s)", timeout, cfg.LogOutputs[0])
	}
	return &Etcd{server: server, client: v3client.New(server.Server), URL: clientURL.String()}, nil
}

// Compact compacts the keyspace at the current revision, so that every older revision is
// gone: a list or watch from an older resourceVersion that reaches etcd gets 410 Gone.
func (e *Etcd) Compact(ctx context.Context) (int64, error) {
	resp, err := e.client.Get(ctx, "compaction-probe")
	if err != nil {
		return 0, fmt.Errorf("read the current revision: %w", err)
	}
	rev := resp.Header.Revision
	if _, err := e.client.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		return 0, fmt.Errorf("compact at revision %d: %w", rev, err)
	}
	return rev, nil
}

// Close stops etcd.
func (e *Etcd) Close() {
	e.client.Close()
	e.server.Close()
}
