// Package testbed makes several simulated hosts out of one Linux machine and
// runs workloads on them that can be checkpointed, moved and verified with
// real CRIU, real namespaces and real TCP.
//
// # Hosts
//
// `Up` creates hosts Prefix1..PrefixN (tb1, tb2, ... by default). A host is
// a network namespace named host.TestbedNetnsPrefix + name (/run/netns/
// ferry-tb1), so host.New("testbed:tb1") reaches it, plus a directory
// Dir/hosts/NAME/rootfs for its workloads' root filesystems. The hosts hang
// on a bridge (br0) that lives in a namespace of its own (ferry-tb-sw): each
// veth pair is created inside that switch namespace with its far end moved
// straight into the host as eth0, so no link and no address of the testbed
// ever appears on the machine's own network. Host N has 10.251.0.N/24 and
// forwards IPv4.
//
// # Workloads
//
// `Run` launches a zoo workload or a static program as PID 1 of its own
// pid, mount, uts, ipc and (by default) network namespaces. Workloads made
// with `unshare` or `ip netns exec` do not dump (they keep the host's mounts
// and fds), so ferry launches them itself, as a chain of its own hidden
// subcommands:
//
//	ferry testbed run        (the CLI; holds the state lock)
//	  nsenter --net=/run/netns/ferry-tb1 -- ferry testbed __launch SPEC
//	    (through host.Netns.Run; waits for one report, prints it, exits)
//	    ferry testbed __supervise SPEC   (setsid, stdio to a log file;
//	      PR_SET_CHILD_SUBREAPER; stays in the host's network namespace)
//	      ferry testbed __init SPEC      (clone with CLONE_NEWPID|NEWNS|
//	        NEWUTS|NEWIPC[|NEWNET] and setsid through SysProcAttr)
//	        -> exec the workload
//
// With its own network, the supervisor adds a veth (host end wlID, workload
// end eth0) before releasing __init through a pipe: the workload's eth0
// holds its own 10.252.x.y/32 and a default route out of eth0; the host end
// does proxy ARP and routes the /32 back. Nothing inside the workload names
// its host, so the same namespace works on any host CRIU restores it to;
// the other hosts route the /32 through the host that holds it (updated on
// every move). A client on another host binds its host's own address, which
// does not move.
//
// __init then does what worked here: `/` made rprivate, the rootfs
// bind-mounted and pivot_root'ed into (pivot_root(".", ".") and a detach of
// the old root), its own /proc, the host name set to the workload's name,
// stdio on the rootfs's own /dev/null (a device node made with mknod, not a
// bind mount CRIU would have to be told about), every fd from 3 up marked
// close-on-exec with close_range, and exec. An error before exec travels
// back to the supervisor through a close-on-exec pipe; its EOF means the
// exec worked.
//
// The rootfs holds a copy of the static ferry binary (/ferry): zoo
// workloads run as `/ferry testbed __zoo NAME ARGS`. A program given after
// `--` is copied to /bin; dynamically linked programs are refused, as the
// rootfs has no loader or libraries.
//
// # Reaping
//
// This VM's PID 1 reaps orphans slowly, and a restore can then fail with
// "Can't fork for N: File exists". Every workload's parent is its
// supervisor, a child subreaper that waits for any child until its workload
// is gone and then exits. A restore runs CRIU (`criu restore -d`) as a
// child of such a supervisor in the target host's network namespace: when
// CRIU exits, the restored tree's root is reparented to the supervisor, not
// to PID 1, and reaped there. Supervisors themselves are left to PID 1 when
// they exit (a zombie supervisor holds nothing).
//
// # State
//
// Dir/state.json (Dir is $FERRY_TESTBED_DIR, default /var/lib/ferry/
// testbed) records hosts and workloads: host, outer pid and its start time
// (so a reused pid is not mistaken for the workload), supervisor, rootfs,
// address, moves, and the highest self-check counter verify saw. Every
// operation holds an flock on Dir/lock while it reads and writes it, so
// separate ferry invocations compose. Every process the testbed starts
// carries FERRY_TESTBED_ID=<state id> in its environment; `Down` kills
// workloads, then anything carrying the marker or living in one of the
// testbed's namespaces, deletes CRIU's `table inet CRIU-*` in each
// namespace, deletes the namespaces (which takes their links), and removes
// its files. It is idempotent and also cleans a half-made testbed (Up saves
// the state before it creates anything).
//
// # Moving a workload with raw CRIU
//
// MoveRaw is the round trip that worked here, kept plain for the migration
// engine to compare against: `criu dump -t <outer pid of the ns init>
// --network-lock nftables --tcp-established` run in the source host's
// namespace, the rootfs copied to the target host's directory, then
// `criu restore --root <rootfs on target> -d --pidfile ...
// --tcp-established --network-lock nftables [--external veth[eth0]:wlID]`
// under a supervisor in the target's namespace. The nftables lock leaves an
// empty table behind (in the host's namespace for a workload sharing it);
// MoveRaw deletes those. A failed restore is retried on the source host
// from the same images, so the workload is not lost. Errors carry the Error
// lines of CRIU's -v4 log, without the ones every log on this machine has.
//
// # The zoo
//
// See package zoo: each workload checks its own state every 200 ms and
// writes a status file in its rootfs with a counter that only grows. Verify
// wants the workload running, its check passing, its counter advancing while
// verify watches, and never below the counter verify saw before (a restored
// workload continues; one that restarted would start from zero).
package testbed
