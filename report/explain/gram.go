package explain

import "strings"

// The prefilter: a pattern can only match a normalised line if one of its
// literals (needles) is in the raw line, and a needle can only be in the line
// if all of its 3-byte substrings (trigrams) are. Each line's trigrams are
// hashed into a 4096-bit set once; a needle is searched with strings.Contains
// only when its sampled trigrams are all in the set. Both steps are
// necessary conditions, so the prefilter never hides a match.

type gramSet [64]uint64

func gramHash(a, b, c byte) uint32 {
	return (uint32(a)*0x9E3779B1 ^ uint32(b)*0x85EBCA77 ^ uint32(c)*0xC2B2AE3D) >> 20 & 4095
}

func (g *gramSet) fill(s string) {
	*g = gramSet{}
	for i := 0; i+2 < len(s); i++ {
		h := gramHash(s[i], s[i+1], s[i+2])
		g[h>>6] |= 1 << (h & 63)
	}
}

func (g *gramSet) has(h uint32) bool { return g[h>>6]&(1<<(h&63)) != 0 }

// needle is a literal with a few of its trigrams sampled for the gram test.
type needle struct {
	text  string
	grams []uint32
}

func newNeedle(s string) needle {
	n := needle{text: s}
	if len(s) < 3 {
		return n
	}
	// Sample the first, last and two middle trigrams.
	last := len(s) - 3
	for _, i := range []int{0, last, last / 3, 2 * last / 3} {
		h := gramHash(s[i], s[i+1], s[i+2])
		dup := false
		for _, g := range n.grams {
			dup = dup || g == h
		}
		if !dup {
			n.grams = append(n.grams, h)
		}
	}
	return n
}

func newNeedles(ss []string) []needle {
	out := make([]needle, len(ss))
	for i, s := range ss {
		out[i] = newNeedle(s)
	}
	return out
}

// anyNeedle reports whether one of needles is in raw, whose trigrams are in g.
func anyNeedle(raw string, g *gramSet, needles []needle) bool {
	for i := range needles {
		n := &needles[i]
		ok := true
		for _, h := range n.grams {
			if !g.has(h) {
				ok = false
				break
			}
		}
		if ok && strings.Contains(raw, n.text) {
			return true
		}
	}
	return false
}
