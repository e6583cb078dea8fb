# hmmap - plain GNU make. Every source file is found by wildcard: adding a
# store or a policy is one .c file in src/stores/ or src/policies/ and one
# line in its registry, nothing here.
#
#   make            build the library, the tool, tests and benchmarks
#   make demo       install missing packages, build, run `hmmap demo`
#   make test       install missing packages, build, run every test
#   make asan       the test suite under ASan+UBSan (build-asan/)
#   make tsan       the test suite under TSan (build-tsan/)
#   make bench      build and run the benchmarks (long; not part of test)
#   make install    library, header, pkg-config file, tool, man pages
#   make fuzz       build the fuzz targets with clang/libFuzzer

VERSION := 0.1.0
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
PKGDIR ?= $(LIBDIR)/pkgconfig

B ?= build
CC ?= cc
SAN ?=
OPT ?= -O2 -g
WERROR ?= $(if $(CI),-Werror,)
WARN := -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
	-Wmissing-prototypes -Wno-unused-parameter -Wformat=2 -Wvla $(WERROR)
CPPFLAGS += -D_GNU_SOURCE -Iinclude -Isrc -DHM_VERSION_STRING=\"$(VERSION)\"
CFLAGS ?= $(OPT)
CFLAGS += -std=gnu11 -fPIC -pthread $(WARN) $(SAN) -MMD -MP
LDFLAGS += -pthread $(SAN)
# Libraries of the stores: remote (hiredis, libmemcached, libsodium for page
# encryption), compressed (lz4, zstd) and NUMA placement (libnuma).
LDLIBS += -lhiredis -lmemcached -lsodium -llz4 -lzstd -lnuma -lm

LIB_SRC := $(wildcard src/core/*.c src/uffd/*.c src/os/*.c src/stores/*.c src/policies/*.c)
CLI_SRC := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC := $(wildcard bench/*.c)
EXAMPLE_SRC := $(wildcard examples/*.c)
# Plug-in libraries: the example and the tests' own (hm_plugin_load()).
PLUGIN_SRC := $(wildcard examples/plugins/*.c tests/plugins/*.c)

LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(B)/%.o)
TESTS := $(TEST_SRC:tests/%.c=$(B)/tests/%)
BENCHES := $(BENCH_SRC:bench/%.c=$(B)/bench/%)
EXAMPLES := $(EXAMPLE_SRC:examples/%.c=$(B)/examples/%)
PLUGINS := $(PLUGIN_SRC:%.c=$(B)/%.so)

LIBA := $(B)/libhmmap.a
LIBSO := $(B)/libhmmap.so.0
TOOL := $(B)/hmmap

# Programs that load plug-ins export the library's API (hm_*, not the
# internal hm__*) from their own symbol table, where a plug-in built without
# -lhmmap finds it. The tool links the whole archive so that every call a
# plug-in may make is there.
EXPORT_API := -Wl,--export-dynamic-symbol='hm_[a-z]*'

# Debian packages the build and the tests need; `deps` installs what is
# missing (as root) and is a no-op when everything is there.
DEB_PKGS := gcc make libc6-dev pkg-config tmux gnuplot-nox \
	libhiredis-dev libmemcached-dev libsodium-dev liblz4-dev libzstd-dev libnuma-dev \
	redis-server redis-tools memcached zstd

.PHONY: all lib tool tests benches examples deps demo test check asan tsan \
	bench soak install uninstall clean fuzz format plugins

all: lib tool tests benches examples plugins

lib: $(LIBA) $(LIBSO)
tool: $(TOOL)
tests: $(TESTS)
benches: $(BENCHES)
examples: $(EXAMPLES)
plugins: $(PLUGINS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIBA): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

$(LIBSO): $(LIB_OBJ) src/libhmmap.map
	$(CC) -shared -Wl,-soname,libhmmap.so.0 -Wl,--version-script=src/libhmmap.map \
		$(LDFLAGS) -o $@ $(LIB_OBJ) $(LDLIBS)
	ln -sf libhmmap.so.0 $(B)/libhmmap.so

$(TOOL): $(CLI_OBJ) $(LIBA)
	$(CC) $(LDFLAGS) $(EXPORT_API) -o $@ $(CLI_OBJ) -Wl,--whole-archive $(LIBA) \
		-Wl,--no-whole-archive $(LDLIBS)

# Tests link the static library so that unit tests may reach internal
# (hm__*) functions; everything else goes through the public header.
$(B)/tests/%: tests/%.c $(LIBA) tests/harness.h tests/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LIBA) $(LDFLAGS) $(EXPORT_API) $(LDLIBS)

$(B)/%.so: %.c include/hmmap.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -shared -o $@ $<

$(B)/bench/%: bench/%.c $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LIBA) $(LDFLAGS) $(LDLIBS)

$(B)/examples/%: examples/%.c $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LIBA) $(LDFLAGS) $(LDLIBS)

deps:
	@sh scripts/deps.sh $(DEB_PKGS)

demo: deps
	$(MAKE) tool
	$(TOOL) demo

test: deps
	$(MAKE) all
	sh tests/run.sh $(B)

check: test

# Sanitizer builds run the same suite in their own build directories.
asan: deps
	$(MAKE) B=build-asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		HMMAP_TEST_SANITIZER=asan sh tests/run.sh build-asan

tsan: deps
	@# TSan does not model stand-alone fences (the statistics seqlock uses
	@# them): -Wno-tsan keeps that note from failing a -Werror build.
	$(MAKE) B=build-tsan SAN="-fsanitize=thread -Wno-tsan" OPT="-O1 -g" all
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
		HMMAP_TEST_SANITIZER=tsan \
		sh tests/run.sh build-tsan

bench: deps
	$(MAKE) all
	sh bench/run.sh $(B)

# The concurrency-heavy tests, round after round with new traffic (not in CI).
SOAK_SECONDS ?= 1800
soak: deps
	$(MAKE) all
	sh scripts/soak.sh $(B) $(SOAK_SECONDS)

fuzz:
	$(MAKE) B=build-fuzz CC=clang SAN="-fsanitize=fuzzer-no-link,address,undefined" lib
	@for f in $(wildcard fuzz/*.c); do \
		n=$$(basename $$f .c); \
		echo "  FUZZ $$n"; \
		clang $(CPPFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined -o build-fuzz/$$n $$f \
			build-fuzz/libhmmap.a -pthread $(LDLIBS) || exit 1; \
	done

install: lib tool
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR)/hmmap $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(PKGDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3
	install -m 644 $(LIBA) $(DESTDIR)$(LIBDIR)/libhmmap.a
	install -m 755 $(LIBSO) $(DESTDIR)$(LIBDIR)/libhmmap.so.0
	ln -sf libhmmap.so.0 $(DESTDIR)$(LIBDIR)/libhmmap.so
	install -m 644 include/hmmap.h $(DESTDIR)$(INCDIR)/hmmap.h
	install -m 644 include/hmmap/*.h $(DESTDIR)$(INCDIR)/hmmap/
	install -m 755 $(TOOL) $(DESTDIR)$(BINDIR)/hmmap
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' hmmap.pc.in > $(DESTDIR)$(PKGDIR)/hmmap.pc
	-install -m 644 man/*.1 $(DESTDIR)$(MANDIR)/man1/ 2>/dev/null
	-install -m 644 man/*.3 $(DESTDIR)$(MANDIR)/man3/ 2>/dev/null
	@# The dynamic loader finds a new library in /usr/local/lib only once its cache knows it.
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
		ldconfig; fi

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libhmmap.a $(DESTDIR)$(LIBDIR)/libhmmap.so* \
		$(DESTDIR)$(INCDIR)/hmmap.h $(DESTDIR)$(BINDIR)/hmmap $(DESTDIR)$(PKGDIR)/hmmap.pc
	rm -rf $(DESTDIR)$(INCDIR)/hmmap

format:
	clang-format -i include/*.h include/hmmap/*.h src/*/*.[ch] cli/*.[ch] tests/*.[ch] bench/*.[ch]

clean:
	rm -rf build build-asan build-tsan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TESTS:=.d) $(BENCHES:=.d) $(EXAMPLES:=.d)
