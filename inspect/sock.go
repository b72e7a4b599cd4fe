package inspect

import (
	"fmt"
	"net/netip"
	"strconv"
)

func sockType(t uint32) string {
	switch t {
	case 1:
		return "stream"
	case 2:
		return "dgram"
	case 3:
		return "raw"
	case 5:
		return "seqpacket"
	}
	return "type-" + strconv.Itoa(int(t))
}

// tcpState names the kernel's socket states (include/net/tcp_states.h),
// which unix sockets share.
func tcpState(s uint32) string {
	names := []string{1: "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"}
	if int(s) < len(names) && names[s] != "" {
		return names[s]
	}
	return "state-" + strconv.Itoa(int(s))
}

func inetKind(family, proto, typ uint32) string {
	var k string
	switch proto {
	case 6:
		k = "tcp"
	case 17:
		k = "udp"
	case 136:
		k = "udplite"
	default:
		k = sockType(typ)
	}
	if family == 10 {
		k += "6"
	}
	return k
}

// addr renders CRIU's address words (network byte order in uint32s).
func addr(words []uint32, port uint32) string {
	var a netip.Addr
	switch len(words) {
	case 1:
		w := words[0]
		a = netip.AddrFrom4([4]byte{byte(w), byte(w >> 8), byte(w >> 16), byte(w >> 24)})
	case 4:
		var b [16]byte
		for i, w := range words {
			b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(w), byte(w>>8), byte(w>>16), byte(w>>24)
		}
		a = netip.AddrFrom16(b).Unmap()
	default:
		return ""
	}
	if a.IsUnspecified() && port == 0 {
		return "" // no peer: a listening or unconnected socket
	}
	return netip.AddrPortFrom(a, uint16(port)).String()
}

func unixName(b []byte) string {
	switch {
	case len(b) == 0:
		return ""
	case b[0] == 0:
		return "@" + string(b[1:])
	}
	return string(b)
}

func peerIno(p uint32) string {
	if p == 0 {
		return ""
	}
	return fmt.Sprintf("ino:%d", p)
}

// markExternal flags unix sockets whose peer is not among the dumped ones.
func markExternal(ss []Socket) {
	inos := map[string]bool{}
	for _, s := range ss {
		if s.Kind[:min(4, len(s.Kind))] == "unix" {
			inos[peerIno(s.Ino)] = true
		}
	}
	for i, s := range ss {
		if s.Kind[:min(4, len(s.Kind))] == "unix" && s.Peer != "" && !inos[s.Peer] {
			ss[i].External = true
		}
	}
}
