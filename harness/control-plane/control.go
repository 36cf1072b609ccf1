package main

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// controlled is a process the control API may stop and start, and how it is stopped: a grace
// of zero kills it at once (a crash); otherwise SIGTERM first, as a service manager restarts it.
type controlled struct {
	process *Process
	grace   time.Duration
}

// controlAPI is the cluster's fault API for the tests, the real-server counterpart of the
// simulator's /__sim/ endpoints (plain HTTP on loopback, POST without a body):
//
//	GET  /info               the ready line again, and which processes run
//	POST /NAME/stop          stop NAME (apiserver: SIGKILL, watches break, nothing is flushed;
//	                         kubelet, containerd…: SIGTERM, then SIGKILL after a grace period)
//	POST /NAME/start         start it again (same ports, same data); returns once ready
//	POST /NAME/restart       both
//	POST /etcd/compact       compact etcd at its current revision: {"revision": N}
//
// NAME is apiserver, and on a whole cluster also kubelet, containerd, kube-proxy,
// kube-scheduler and kube-controller-manager.
func controlAPI(ctx context.Context, info any, etcd *Etcd, processes map[string]controlled) http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any, err error) {
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			v = map[string]string{"error": err.Error()}
		}
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /info", func(w http.ResponseWriter, _ *http.Request) {
		running := map[string]bool{}
		for name, c := range processes {
			running[name] = c.process.Running()
		}
		// apiserverRunning: the field the Rust harness has always read.
		reply(w, map[string]any{"info": info, "running": running, "apiserverRunning": running["apiserver"]}, nil)
	})
	for name, c := range processes {
		mux.HandleFunc("POST /"+name+"/stop", func(w http.ResponseWriter, _ *http.Request) {
			reply(w, map[string]string{name: "stopped"}, c.process.Stop(c.grace))
		})
		mux.HandleFunc("POST /"+name+"/start", func(w http.ResponseWriter, _ *http.Request) {
			reply(w, map[string]string{name: "ready"}, c.process.Start(ctx))
		})
		mux.HandleFunc("POST /"+name+"/restart", func(w http.ResponseWriter, _ *http.Request) {
			if err := c.process.Stop(c.grace); err != nil {
				reply(w, nil, err)
				return
			}
			reply(w, map[string]string{name: "ready"}, c.process.Start(ctx))
		})
	}
	mux.HandleFunc("POST /etcd/compact", func(w http.ResponseWriter, r *http.Request) {
		rev, err := etcd.Compact(r.Context())
		reply(w, map[string]int64{"revision": rev}, err)
	})
	return mux
}
