package explain

import "strings"

// Placeholders put in place of the parts of a line that vary between runs.
const (
	NumberPlaceholder = "<N>" // a decimal number: PID, line number, fd, size, inode
	HexPlaceholder    = "<X>" // a hex number or address: 0x1a, 7f7af50bc000
)

// Normalise returns line with what varies between runs replaced, so that one
// pattern matches the same failure in every log:
//
//   - CRIU's "(00.123456)" timestamp and the "  1234: " PID prefix of restore
//     logs, and liblxc's "lxc NAME 20261128123236.854 " prefix are cut off;
//   - every decimal number standing as a word of its own becomes <N>
//     ("criu/cr-restore.c:1237" -> "criu/cr-restore.c:<N>", "Can't fork for
//     27407" -> "Can't fork for <N>"); digits inside words (ip6tables, x86_64,
//     c5) are kept;
//   - every hex word becomes <X>: 0x-prefixed ones and bare ones of 8 or more
//     hex digits that hold a digit (addresses, inode numbers in hex).
//
// Paths are kept; patterns match them with \S+. Whitespace is kept as it is,
// so that any text of the normalised line outside placeholders is also text
// of the original line (the matcher's prefilter relies on it).
func Normalise(line string) string {
	line = strings.TrimRight(line, "\r\n")
	line = stripPrefix(line)
	var b strings.Builder
	b.Grow(len(line) + 8)
	i := 0
	for i < len(line) {
		c := line[i]
		if !isWord(c) {
			b.WriteByte(c)
			i++
			continue
		}
		j := i
		for j < len(line) && isWord(line[j]) {
			j++
		}
		b.WriteString(normaliseWord(line[i:j]))
		i = j
	}
	return b.String()
}

func isWord(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func normaliseWord(w string) string {
	allDigits, allHex, hasDigit := true, true, false
	for k := 0; k < len(w); k++ {
		c := w[k]
		if isDigit(c) {
			hasDigit = true
		} else {
			allDigits = false
		}
		if !isHex(c) {
			allHex = false
		}
	}
	switch {
	case allDigits:
		return NumberPlaceholder
	case len(w) > 2 && w[0] == '0' && (w[1] == 'x' || w[1] == 'X') && isAllHex(w[2:]):
		return HexPlaceholder
	case allHex && hasDigit && len(w) >= 8:
		return HexPlaceholder
	}
	return w
}

func isAllHex(s string) bool {
	for k := 0; k < len(s); k++ {
		if !isHex(s[k]) {
			return false
		}
	}
	return true
}

// stripPrefix cuts the timestamp and PID prefixes of CRIU and liblxc log
// lines.
func stripPrefix(line string) string {
	s := strings.TrimLeft(line, " \t")
	// CRIU: "(00.123456) " then optionally "  1234: ".
	if len(s) > 2 && s[0] == '(' {
		j := 1
		for j < len(s) && (isDigit(s[j]) || s[j] == '.') {
			j++
		}
		if j > 1 && j < len(s) && s[j] == ')' {
			s = strings.TrimLeft(s[j+1:], " \t")
			s = stripPID(s)
			return s
		}
	}
	// Restore logs without timestamps: "  1234: Error ...".
	if p := stripPID(s); p != s {
		return p
	}
	// liblxc: "lxc NAME 20261128123236.854 LEVEL ..." or "lxc 2026... LEVEL".
	if strings.HasPrefix(s, "lxc ") {
		rest := s[4:]
		for k := 0; k < 2; k++ {
			sp := strings.IndexByte(rest, ' ')
			if sp < 0 {
				break
			}
			if isLXCTime(rest[:sp]) {
				return strings.TrimLeft(rest[sp+1:], " ")
			}
			rest = rest[sp+1:]
		}
	}
	return line
}

// stripPID removes a leading "1234: " (a PID followed by a colon and space).
func stripPID(s string) string {
	j := 0
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	if j > 0 && j+1 < len(s) && s[j] == ':' && (s[j+1] == ' ' || s[j+1] == '\t') {
		return strings.TrimLeft(s[j+1:], " \t")
	}
	return s
}

// isLXCTime reports whether s looks like liblxc's "20261128123236.854".
func isLXCTime(s string) bool {
	if len(s) != 18 || s[14] != '.' {
		return false
	}
	for k := 0; k < len(s); k++ {
		if k != 14 && !isDigit(s[k]) {
			return false
		}
	}
	return true
}
