package main

import (
	"context"
	"encoding/json"
	"net/http"
)

// controlAPI is the control plane's fault API for the tests, the real-server counterpart of
// the simulator's /__sim/ endpoints (plain HTTP on loopback, POST without a body):
//
//	GET  /info               the ready line again
//	POST /apiserver/stop     kill kube-apiserver (SIGKILL: watches break, nothing is flushed)
//	POST /apiserver/start    start it again on the same port and etcd; returns once ready
//	POST /apiserver/restart  both
//	POST /etcd/compact       compact etcd at its current revision: {"revision": N}
func controlAPI(ctx context.Context, info Info, api *APIServer, etcd *Etcd) http.Handler {
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
		reply(w, map[string]any{"info": info, "apiserverRunning": api.Running()}, nil)
	})
	mux.HandleFunc("POST /apiserver/stop", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, map[string]string{"apiserver": "stopped"}, api.Stop())
	})
	mux.HandleFunc("POST /apiserver/start", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, map[string]string{"apiserver": "ready"}, api.Start(ctx))
	})
	mux.HandleFunc("POST /apiserver/restart", func(w http.ResponseWriter, _ *http.Request) {
		if err := api.Stop(); err != nil {
			reply(w, nil, err)
			return
		}
		reply(w, map[string]string{"apiserver": "ready"}, api.Start(ctx))
	})
	mux.HandleFunc("POST /etcd/compact", func(w http.ResponseWriter, r *http.Request) {
		rev, err := etcd.Compact(r.Context())
		reply(w, map[string]int64{"revision": rev}, err)
	})
	return mux
}
