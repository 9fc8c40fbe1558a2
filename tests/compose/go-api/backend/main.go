// A Go API as others write it: a static binary in a scratch image that listens on :80, as root in
// compose. Scenario 26 of the e2e suite runs it unchanged (same image, same port) under ScaledApi's
// restricted defaults: uid 10001, every capability dropped.
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
)

func main() {
	hostname, err := os.Hostname()
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"hostname": hostname, "path": r.URL.Path})
	})
	log.Println("listening on :80")
	log.Fatal(http.ListenAndServe(":80", nil))
}
