package migrate

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// IsCRIU reports whether pid is a CRIU process: its comm is criu, or it is
// criu run by its own dynamic loader, as the project's install does
// (`ld-linux-x86-64.so.2 --library-path ... /opt/ferry/criu/usr/sbin/criu`,
// whose comm is ld-linux-x86-64). A zombie is not one.
func IsCRIU(pid int) bool {
	p := "/proc/" + strconv.Itoa(pid)
	comm, err := os.ReadFile(p + "/comm")
	if err != nil || ProcState(pid) == "" {
		return false
	}
	switch c := strings.TrimSpace(string(comm)); {
	case c == "criu":
		return true
	case !strings.HasPrefix(c, "ld-linux"):
		return false
	}
	argv, err := os.ReadFile(p + "/cmdline")
	if err != nil {
		return false
	}
	for _, a := range bytes.Split(argv, []byte{0}) {
		if filepath.Base(string(a)) == "criu" {
			return true
		}
	}
	return false
}

// CRIUProcesses lists the CRIU processes running on this machine.
func CRIUProcesses() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && IsCRIU(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}
