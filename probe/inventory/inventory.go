// Package inventory reads Ansible-style inventories (INI and YAML) into
// ferry host specs: ansible_host, ansible_user and ansible_port make an
// ssh:// spec; ansible_connection=local makes "local".
package inventory

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Host is one inventory host.
type Host struct {
	Name string `json:"name"`
	Spec string `json:"spec"`
}

// Parse reads an inventory; YAML when it looks like YAML (a top-level
// "all:" or any "key:" line before a section), INI otherwise.
func Parse(b []byte) ([]Host, error) {
	if isYAML(b) {
		return parseYAML(b)
	}
	return parseINI(b)
}

func isYAML(b []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";") {
			continue
		}
		if l == "---" {
			return true
		}
		if strings.HasPrefix(l, "[") {
			return false
		}
		return strings.HasSuffix(l, ":") || strings.Contains(l, ": ")
	}
	return false
}

type vars map[string]string

type builder struct {
	order []string
	host  map[string]vars
}

func (b *builder) add(name string, v vars) {
	if b.host == nil {
		b.host = map[string]vars{}
	}
	h, ok := b.host[name]
	if !ok {
		h = vars{}
		b.host[name] = h
		b.order = append(b.order, name)
	}
	for k, val := range v {
		if _, set := h[k]; !set {
			h[k] = val
		}
	}
}

func (b *builder) hosts() ([]Host, error) {
	out := make([]Host, 0, len(b.order))
	for _, name := range b.order {
		spec, err := toSpec(name, b.host[name])
		if err != nil {
			return nil, err
		}
		out = append(out, Host{Name: name, Spec: spec})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("inventory holds no hosts")
	}
	return out, nil
}

func toSpec(name string, v vars) (string, error) {
	if v["ansible_connection"] == "local" {
		return "local", nil
	}
	if c := v["ansible_connection"]; c != "" && c != "ssh" && c != "smart" && c != "paramiko" {
		return "", fmt.Errorf("host %s: ansible_connection=%s is not supported (only ssh and local)", name, c)
	}
	h := v["ansible_host"]
	if h == "" {
		h = name
	}
	h = strings.Trim(h, "[]")
	hp := h
	if strings.Contains(h, ":") {
		hp = "[" + h + "]"
	}
	if p := v["ansible_port"]; p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("host %s: ansible_port=%q is not a port number", name, p)
		}
		hp = net.JoinHostPort(h, p)
	}
	s := "ssh://"
	if u := v["ansible_user"]; u != "" {
		s += u + "@"
	}
	s += hp
	return s, nil
}

// parseINI reads [group] sections of "name key=value ..." lines,
// [group:vars] sections of "key=value" lines, and [group:children].
func parseINI(b []byte) ([]Host, error) {
	var bl builder
	groupHosts := map[string][]string{}
	groupVars := map[string]vars{}
	children := map[string][]string{}
	section, kind := "ungrouped", ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		n++
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";") {
			continue
		}
		if strings.HasPrefix(l, "[") {
			if !strings.HasSuffix(l, "]") {
				return nil, fmt.Errorf("inventory line %d: unclosed section %q", n, l)
			}
			section, kind, _ = strings.Cut(strings.Trim(l, "[]"), ":")
			continue
		}
		words, err := splitWords(l)
		if err != nil {
			return nil, fmt.Errorf("inventory line %d: %w", n, err)
		}
		switch kind {
		case "vars":
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				return nil, fmt.Errorf("inventory line %d: want key=value in [%s:vars]", n, section)
			}
			if groupVars[section] == nil {
				groupVars[section] = vars{}
			}
			groupVars[section][strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
		case "children":
			children[section] = append(children[section], words[0])
		case "":
			hv := vars{}
			for _, w := range words[1:] {
				k, v, ok := strings.Cut(w, "=")
				if !ok {
					return nil, fmt.Errorf("inventory line %d: want key=value, got %q", n, w)
				}
				hv[k] = v
			}
			if strings.Contains(words[0], "[") {
				return nil, fmt.Errorf("inventory line %d: host ranges like %q are not supported", n, words[0])
			}
			bl.add(words[0], hv)
			groupHosts[section] = append(groupHosts[section], words[0])
		default:
			return nil, fmt.Errorf("inventory line %d: unknown section kind %q", n, kind)
		}
	}
	// Group vars apply to the group's hosts and its children's, the
	// host's own vars winning (add keeps what is already set).
	var apply func(group string, v vars, seen map[string]bool)
	apply = func(group string, v vars, seen map[string]bool) {
		if seen[group] {
			return
		}
		seen[group] = true
		for _, h := range groupHosts[group] {
			bl.add(h, v)
		}
		for _, c := range children[group] {
			apply(c, v, seen)
		}
	}
	// The most specific group's vars win: apply children before their
	// parents (add keeps what is already set).
	parents := map[string][]string{}
	for p, cs := range children {
		for _, c := range cs {
			parents[c] = append(parents[c], p)
		}
	}
	var depth func(g string, seen map[string]bool) int
	depth = func(g string, seen map[string]bool) int {
		if seen[g] {
			return 0
		}
		seen[g] = true
		d := 0
		for _, p := range parents[g] {
			if pd := depth(p, seen) + 1; pd > d {
				d = pd
			}
		}
		return d
	}
	groups := sortedGroups(groupVars)
	sort.SliceStable(groups, func(i, j int) bool {
		return depth(groups[i], map[string]bool{}) > depth(groups[j], map[string]bool{})
	})
	for _, g := range groups {
		apply(g, groupVars[g], map[string]bool{})
	}
	if v, ok := groupVars["all"]; ok {
		for _, h := range bl.order {
			bl.add(h, v)
		}
	}
	return bl.hosts()
}

func sortedGroups(m map[string]vars) []string {
	var g []string
	for k := range m {
		if k != "all" {
			g = append(g, k)
		}
	}
	sort.Strings(g)
	return g
}

// splitWords splits on blanks, keeping quoted values together.
func splitWords(l string) ([]string, error) {
	var words []string
	var cur strings.Builder
	quote := rune(0)
	for _, r := range l {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote = r
		case r == ' ' || r == '\t':
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed quote")
	}
	if cur.Len() > 0 {
		words = append(words, cur.String())
	}
	return words, nil
}

type yamlGroup struct {
	Hosts    map[string]map[string]any `json:"hosts"`
	Vars     map[string]any            `json:"vars"`
	Children map[string]*yamlGroup     `json:"children"`
}

// parseYAML reads the YAML inventory form: groups with hosts, vars and
// children, under a top-level "all" or any other group names.
func parseYAML(b []byte) ([]Host, error) {
	var top map[string]*yamlGroup
	if err := yaml.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	var bl builder
	var walk func(g *yamlGroup, inherited vars)
	walk = func(g *yamlGroup, inherited vars) {
		if g == nil {
			return
		}
		v := vars{}
		for k, val := range inherited {
			v[k] = val
		}
		for k, val := range g.Vars {
			v[k] = fmt.Sprint(val)
		}
		names := make([]string, 0, len(g.Hosts))
		for h := range g.Hosts {
			names = append(names, h)
		}
		sort.Strings(names)
		for _, h := range names {
			hv := vars{}
			for k, val := range g.Hosts[h] {
				hv[k] = fmt.Sprint(val)
			}
			for k, val := range v {
				if _, ok := hv[k]; !ok {
					hv[k] = val
				}
			}
			bl.add(h, hv)
		}
		kids := make([]string, 0, len(g.Children))
		for c := range g.Children {
			kids = append(kids, c)
		}
		sort.Strings(kids)
		for _, c := range kids {
			walk(g.Children[c], v)
		}
	}
	groups := make([]string, 0, len(top))
	for g := range top {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		walk(top[g], nil)
	}
	return bl.hosts()
}
