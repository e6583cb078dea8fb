/* SPDX-License-Identifier: MIT */
/*
 * The hmmap tool: the demo runs and verifies on a small file, and every
 * subcommand rejects bad usage with exit status 2 and a message.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "testutil.h"

static char tool[256];

static void demo_small(void)
{
	static char out[16384];
	char cmd[1024];

	if (access(tool, X_OK))
		SKIP("%.200s is not built", tool);
	snprintf(cmd, sizeof cmd, "%s demo --size 64M --cache 8M --ops 3000", tool);
	int rc = tu_run(cmd, out, sizeof out);
	CHECKF(rc == 0, "exit %d:\n%.300s", rc, out);
	CHECK(strstr(out, "demo: all checks passed"));
	CHECK(strstr(out, "hmmap   sequential"));
	CHECK(strstr(out, "mmap    random"));
	CHECK(strstr(out, "every written word is on disk"));
}

/*
 * Runs shell text `sh` with $t the tool and $d a new directory, checks that
 * its output holds `want` and `also` (unless NULL), and that the demo left
 * nothing in $d (rmdir() fails on a file left in it).
 */
static void demo_leaves_nothing(const char *name, const char *sh, const char *want,
				const char *also)
{
	char out[4096], cmd[2048], dir[300];

	tu_path(dir, sizeof dir, name);
	CHECK(mkdir(dir, 0700) == 0);
	snprintf(cmd, sizeof cmd, "{ d=%s; t=%s; %s; }", dir, tool, sh);
	tu_run(cmd, out, sizeof out);
	CHECKF(strstr(out, want), "no '%s' in:\n%.300s", want, out);
	if (also)
		CHECKF(strstr(out, also), "no '%s' in:\n%.300s", also, out);
	CHECKF(rmdir(dir) == 0, "%s: %s", dir, strerror(errno));
}

/*
 * A data file that cannot be written whole (the file system full; here a
 * file size limit of 10 MiB for 64 MiB, EFBIG rather than SIGXFSZ) is an
 * error that removes the partial file, which held the space it took.
 */
static void demo_no_room(void)
{
	if (access(tool, X_OK))
		SKIP("%.200s is not built", tool);
	demo_leaves_nothing("demo-no-room",
			    "trap '' XFSZ; (ulimit -f 20480 && exec $t demo --size 64M --cache 8M "
			    "--dir $d); echo status $?",
			    "status 1", "cannot write");
}

/* Stopped by a signal (kill, Ctrl-C), the demo first removes its data file. */
static void demo_interrupted(void)
{
	if (access(tool, X_OK))
		SKIP("%.200s is not built", tool);
	/* Far more operations than it runs before the signal; SIGTERM as kill sends. */
	demo_leaves_nothing("demo-killed",
			    "$t demo --size 64M --cache 8M --ops 100000000 --dir $d >/dev/null & "
			    "p=$!; i=0; while [ ! -e $d/hmmap-demo-$p.dat ] && [ $i -lt 3000 ]; do "
			    "sleep 0.01; i=$((i+1)); done; sleep 0.3; kill -TERM $p; wait $p; "
			    "echo status $?",
			    "status 143", NULL);
}

/*
 * Out of descriptors, the fault engine cannot start: the demo says so,
 * naming the cause, before it writes a data file (the header used to say
 * "fault mode thread" all the same).
 */
static void demo_no_descriptors(void)
{
	if (access(tool, X_OK))
		SKIP("%.200s is not built", tool);
	demo_leaves_nothing("demo-no-fds",
			    "(ulimit -n 5 && exec $t demo --size 64M --cache 8M --dir $d); "
			    "echo status $?",
			    "cannot start the fault engine: ", "Too many open files");
}

static void version_and_help(void)
{
	char out[4096], cmd[1024];

	if (access(tool, X_OK))
		SKIP("%.200s is not built", tool);
	snprintf(cmd, sizeof cmd, "%s version", tool);
	CHECK(tu_run(cmd, out, sizeof out) == 0 && strstr(out, "hmmap 0."));
	snprintf(cmd, sizeof cmd, "%s --help", tool);
	CHECK(tu_run(cmd, out, sizeof out) == 0 && strstr(out, "demo") && strstr(out, "replay"));
	/* "help COMMAND" is "COMMAND --help". */
	snprintf(cmd, sizeof cmd, "%s help probe", tool);
	CHECK(tu_run(cmd, out, sizeof out) == 0 && strstr(out, "usage: hmmap probe URI"));
	/* Every command has --help, version and help included. */
	snprintf(cmd, sizeof cmd, "%s version --help", tool);
	CHECK(tu_run(cmd, out, sizeof out) == 0 && strstr(out, "usage: hmmap version"));
	snprintf(cmd, sizeof cmd, "%s help version", tool);
	CHECK(tu_run(cmd, out, sizeof out) == 0 && strstr(out, "usage: hmmap version"));
	snprintf(cmd, sizeof cmd, "%s help --help", tool);
	CHECK(tu_run(cmd, out, sizeof out) == 0 && strstr(out, "commands:"));
	snprintf(cmd, sizeof cmd, "%s stores", tool);
	CHECK(tu_run(cmd, out, sizeof out) == 0 && strstr(out, "file") && strstr(out, "mem"));
	snprintf(cmd, sizeof cmd, "%s policies", tool);
	CHECK(tu_run(cmd, out, sizeof out) == 0 && strstr(out, "clock") && strstr(out, "s3fifo"));
}

static void bad_usage(void)
{
	static const char *const bad[] = {
		"",
		"nosuchcommand",
		"demo --size abc",
		"demo --cache 0",
		"demo --threads 99",
		"demo --ops -1",
		"demo --bogus",
		"demo extra-argument",
		"stores extra",
		"policies extra",
		"version extra",
		"help nosuchcommand",
		"help demo extra",
	};
	char out[4096], cmd[1024];

	if (access(tool, X_OK))
		SKIP("%.200s is not built", tool);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(cmd, sizeof cmd, "%s %s", tool, bad[i]);
		int rc = tu_run(cmd, out, sizeof out);
		CHECKF(rc == 2, "'%s' exited %d", bad[i], rc);
		CHECKF(out[0] != 0, "'%s' printed nothing", bad[i]);
	}
}

int main(void)
{
	const char *b = getenv("HMMAP_BUILD");

	snprintf(tool, sizeof tool, "./%.200s/hmmap", b && *b ? b : "build");
	RUN(version_and_help);
	RUN(bad_usage);
	RUN(demo_small);
	RUN(demo_no_room);
	RUN(demo_interrupted);
	RUN(demo_no_descriptors);
	tu_cleanup();
	return test_done();
}
