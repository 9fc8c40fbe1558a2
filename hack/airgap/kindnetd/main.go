// Command kindnetd is a minimal stand-in for kind's kindnetd, built by hack/airgap/build.sh when the
// Go module proxy does not serve kind's own kindnetd module. It runs from kind's default CNI manifest
// (the same image name, environment and mounts) and does what a kind cluster needs from it:
//   - writes a CNI config list (ptp + host-local IPAM for this node's pod CIDRs, portmap) into
//     /etc/cni/net.d, which lets the node become Ready;
//   - routes every other node's pod CIDRs through that node's internal IP;
//   - masquerades traffic from pods to destinations outside the cluster's pod subnet.
//
// It does not implement network policies (kind's kindnetd does since 2024).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	cniConfigName = "10-kindnet.conflist"
	masqChain     = "KIND-MASQ-AGENT"
	resyncPeriod  = 10 * time.Second
)

type config struct {
	hostIP     string
	podSubnets []string
	cniDir     string
}

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	cfg := config{
		hostIP: os.Getenv("HOST_IP"),
		cniDir: envOr("CNI_CONFIG_DIR", "/etc/cni/net.d"),
	}
	for _, s := range strings.Split(os.Getenv("POD_SUBNET"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.podSubnets = append(cfg.podSubnets, s)
		}
	}
	if cfg.hostIP == "" || len(cfg.podSubnets) == 0 {
		log.Fatal("kindnetd: HOST_IP and POD_SUBNET must be set")
	}
	restCfg, err := rest.InClusterConfig()
	if err != nil {
		log.Fatalf("kindnetd: in-cluster config: %v", err)
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		log.Fatalf("kindnetd: client: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	log.Printf("kindnetd (scaledapi airgap) starting: host IP %s, pod subnets %v", cfg.hostIP, cfg.podSubnets)
	for _, subnet := range cfg.podSubnets {
		if err := ensureMasquerade(subnet); err != nil {
			log.Printf("masquerade rules for %s: %v", subnet, err)
		}
	}
	for {
		if err := syncOnce(ctx, client, cfg); err != nil {
			log.Printf("sync: %v", err)
		}
		select {
		case <-ctx.Done():
			log.Print("kindnetd: stopping")
			return
		case <-time.After(resyncPeriod):
		}
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func syncOnce(ctx context.Context, client kubernetes.Interface, cfg config) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	var self *corev1.Node
	for i := range nodes.Items {
		if nodeHasIP(&nodes.Items[i], cfg.hostIP) {
			self = &nodes.Items[i]
			break
		}
	}
	if self == nil {
		return fmt.Errorf("no node has internal IP %s yet", cfg.hostIP)
	}
	cidrs := nodePodCIDRs(self)
	if len(cidrs) == 0 {
		return fmt.Errorf("node %s has no pod CIDR yet", self.Name)
	}
	if err := writeCNIConfig(cfg.cniDir, cidrs, mtuOf(cfg.hostIP)); err != nil {
		return err
	}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if n.Name == self.Name {
			continue
		}
		for _, cidr := range nodePodCIDRs(n) {
			gw := internalIPOfFamily(n, isIPv6CIDR(cidr))
			if gw == "" {
				continue
			}
			if out, err := run("ip", "route", "replace", cidr, "via", gw); err != nil {
				log.Printf("route %s via %s (node %s): %v: %s", cidr, gw, n.Name, err, out)
			}
		}
	}
	return nil
}

func nodeHasIP(n *corev1.Node, ip string) bool {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && a.Address == ip {
			return true
		}
	}
	return false
}

func nodePodCIDRs(n *corev1.Node) []string {
	if len(n.Spec.PodCIDRs) > 0 {
		return n.Spec.PodCIDRs
	}
	if n.Spec.PodCIDR != "" {
		return []string{n.Spec.PodCIDR}
	}
	return nil
}

func internalIPOfFamily(n *corev1.Node, v6 bool) string {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip := net.ParseIP(a.Address)
		if ip != nil && (ip.To4() == nil) == v6 {
			return a.Address
		}
	}
	return ""
}

func isIPv6CIDR(cidr string) bool {
	ip, _, err := net.ParseCIDR(cidr)
	return err == nil && ip.To4() == nil
}

// mtuOf returns the MTU of the interface that holds ip, 1500 when unknown.
func mtuOf(ip string) int {
	ifaces, err := net.Interfaces()
	if err != nil {
		return 1500
	}
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.String() == ip {
				return ifc.MTU
			}
		}
	}
	return 1500
}

func writeCNIConfig(dir string, cidrs []string, mtu int) error {
	var ranges [][]map[string]string
	var routes []map[string]string
	for _, c := range cidrs {
		ranges = append(ranges, []map[string]string{{"subnet": c}})
		if isIPv6CIDR(c) {
			routes = append(routes, map[string]string{"dst": "::/0"})
		} else {
			routes = append(routes, map[string]string{"dst": "0.0.0.0/0"})
		}
	}
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "kindnet",
		"plugins": []any{
			map[string]any{
				"type":   "ptp",
				"ipMasq": false,
				"mtu":    mtu,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": "/run/cni-ipam-state",
					"routes":  routes,
					"ranges":  ranges,
				},
			},
			map[string]any{
				"type":         "portmap",
				"capabilities": map[string]bool{"portMappings": true},
			},
		},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, cniConfigName)
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	log.Printf("wrote %s for pod CIDRs %v (mtu %d)", path, cidrs, mtu)
	return nil
}

// ensureMasquerade makes traffic from pods to anything outside the pod subnet leave with the node's
// address: POSTROUTING (non-local destinations) -> KIND-MASQ-AGENT: RETURN for the pod subnet, else
// MASQUERADE.
func ensureMasquerade(subnet string) error {
	ipt := "iptables"
	if isIPv6CIDR(subnet) {
		ipt = "ip6tables"
	}
	if _, err := run(ipt, "-w", "-t", "nat", "-N", masqChain); err != nil {
		// exists already: fine
		log.Printf("%s chain %s exists", ipt, masqChain)
	}
	rules := [][]string{
		{"POSTROUTING", "-m", "addrtype", "!", "--dst-type", "LOCAL", "-m", "comment", "--comment", "kind-masq-agent", "-j", masqChain},
		{masqChain, "-d", subnet, "-m", "comment", "--comment", "kind-masq-agent: cluster-local traffic", "-j", "RETURN"},
		{masqChain, "-m", "comment", "--comment", "kind-masq-agent: outbound traffic", "-j", "MASQUERADE"},
	}
	for _, r := range rules {
		check := append([]string{"-w", "-t", "nat", "-C"}, r...)
		if _, err := run(ipt, check...); err == nil {
			continue
		}
		add := append([]string{"-w", "-t", "nat", "-A"}, r...)
		if out, err := run(ipt, add...); err != nil {
			return fmt.Errorf("%s %v: %v: %s", ipt, add, err, out)
		}
	}
	log.Printf("%s masquerade rules in place for pod subnet %s", ipt, subnet)
	return nil
}

func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
