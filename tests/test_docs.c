/* SPDX-License-Identifier: MIT */
/*
 * The manual agrees with the library: man/hmmap.3 lists every environment
 * variable of README's table, and every errno that hmmap() and hmunmap()
 * are seen to return here appears in its ERRORS section. The sources are
 * found from this program's path (BUILD/tests/test_docs, BUILD in the
 * source tree); the case is skipped when they are not there.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

static char root[PATH_MAX];

/* The whole file in a new string, or NULL. */
static char *slurp(const char *rel)
{
	char path[PATH_MAX + 64];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof path, "%s/%s", root, rel);
	f = fopen(path, "re");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	if (buf)
		buf[n] = 0;
	fclose(f);
	return buf;
}

static void test_man_environment(void)
{
	char *readme = slurp("README.md"), *man = slurp("man/hmmap.3");
	int seen = 0;

	if (!readme || !man) {
		free(readme);
		free(man);
		SKIP("no README.md or man/hmmap.3 under %.200s", root);
	}
	/* README's table rows start with "| `HMMAP_NAME`". */
	for (const char *p = readme; (p = strstr(p, "\n| `HMMAP_")); p++) {
		char name[64];
		size_t n = strspn(p + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789");
		snprintf(name, sizeof name, "%.*s", (int)(n < 63 ? n : 63), p + 4);
		seen++;
		CHECKF(strstr(man, name), "man/hmmap.3 does not list %s", name);
	}
	CHECKF(seen > 10, "found %d variables in README's table", seen);
	free(readme);
	free(man);
}

static void test_man_errors(void)
{
	char *man = slurp("man/hmmap.3"), *errs;
	static const struct {
		int err;
		const char *name;
	} seen[] = { { EOVERFLOW, "EOVERFLOW" }, { EINVAL, "EINVAL" } };
	void *p;

	if (!man)
		SKIP("no man/hmmap.3 under %.200s", root);
	errs = strstr(man, ".SH ERRORS");
	CHECK(errs);
	/* What hmmap() returns for huge lengths and offsets, and hmunmap() of nothing. */
	errno = 0;
	p = hmmap(NULL, (1ull << 46) + 4096, PROT_READ, HM_CACHED, "mem:1M", 0);
	CHECK(p == MAP_FAILED && errno == EOVERFLOW);
	errno = 0;
	p = hmmap(NULL, 4096, PROT_READ, HM_CACHED, "mem:1M", (off_t)((1ull << 62) + 4096));
	CHECK(p == MAP_FAILED && errno == EOVERFLOW);
	p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED);
	errno = 0;
	CHECK(hmunmap(p, 4096) == -1 && errno == EINVAL);
	munmap(p, 4096);
	for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++) {
		char tp[64];
		snprintf(tp, sizeof tp, ".TP\n.B %s\n", seen[i].name);
		CHECKF(strstr(errs, tp), "ERRORS of man/hmmap.3 has no %s", seen[i].name);
	}
	/* hmunmap() takes parts of mappings (include/hmmap.h, README). */
	CHECKF(!strstr(man, "not the start of a mapping") && !strstr(man, "of a whole mapping"),
	       "man/hmmap.3 says hmunmap() takes only whole mappings");
	free(man);
}

int main(int argc, char **argv)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);

	(void)argc;
	(void)argv;
	exe[n > 0 ? n : 0] = 0;
	/* BUILD/tests/test_docs -> the directory that holds BUILD. */
	for (int up = 0; up < 3; up++) {
		char *s = strrchr(exe, '/');
		if (s)
			*s = 0;
	}
	snprintf(root, sizeof root, "%s", exe[0] ? exe : ".");
	RUN(test_man_environment);
	RUN(test_man_errors);
	return test_done();
}
