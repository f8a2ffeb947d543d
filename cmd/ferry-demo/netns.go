package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// netns is two network namespaces joined by a veth pair shaped with tc,
// using addresses from 198.18.0.0/15 (reserved for benchmarks).
type netns struct {
	a, b         string
	addrA, addrB string
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetns creates ferry-<pid>-a and -b with 198.18.0.1 and .2 on a veth
// pair limited to 10 Gbit/s each way.
func newNetns() (*netns, error) {
	id := os.Getpid()
	n := &netns{a: fmt.Sprintf("ferry-%d-a", id), b: fmt.Sprintf("ferry-%d-b", id), addrA: "198.18.0.1", addrB: "198.18.0.2"}
	va, vb := fmt.Sprintf("fy%da", id%100000), fmt.Sprintf("fy%db", id%100000)
	steps := [][]string{
		{"ip", "netns", "add", n.a}, {"ip", "netns", "add", n.b},
		{"ip", "link", "add", va, "type", "veth", "peer", "name", vb},
		{"ip", "link", "set", va, "netns", n.a}, {"ip", "link", "set", vb, "netns", n.b},
		{"ip", "-n", n.a, "addr", "add", n.addrA + "/24", "dev", va},
		{"ip", "-n", n.b, "addr", "add", n.addrB + "/24", "dev", vb},
		{"ip", "-n", n.a, "link", "set", va, "up"}, {"ip", "-n", n.b, "link", "set", vb, "up"},
		{"ip", "-n", n.a, "link", "set", "lo", "up"}, {"ip", "-n", n.b, "link", "set", "lo", "up"},
		{"tc", "-n", n.a, "qdisc", "add", "dev", va, "root", "tbf", "rate", "10gbit", "burst", "4mb", "latency", "10ms"},
		{"tc", "-n", n.b, "qdisc", "add", "dev", vb, "root", "tbf", "rate", "10gbit", "burst", "4mb", "latency", "10ms"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			n.remove()
			return nil, fmt.Errorf("network namespaces (root and iproute2 needed): %w", err)
		}
	}
	return n, nil
}

// remove deletes both namespaces (and with them the veth pair).
func (n *netns) remove() {
	run("ip", "netns", "del", n.a)
	run("ip", "netns", "del", n.b)
}

// exec returns a command running path inside namespace ns.
func (n *netns) exec(ns, path string, args ...string) []string {
	return append([]string{"ip", "netns", "exec", ns, path}, args...)
}
