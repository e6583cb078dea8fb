/* SPDX-License-Identifier: MIT */
/*
 * Subcommands of the hmmap tool. Each takes the arguments after its name
 * (argv[0] is the subcommand name) and returns the process exit status:
 * 0 success, 1 failure, 2 bad usage. The tool uses the public API only.
 */
#ifndef HM_CLI_H
#define HM_CLI_H

int hm_cli_demo(int argc, char **argv);
int hm_cli_replay(int argc, char **argv);
int hm_cli_policies(int argc, char **argv);
int hm_cli_stores(int argc, char **argv);
int hm_cli_ls(int argc, char **argv);
int hm_cli_tiers(int argc, char **argv); /* cli/tiers.c */
int hm_cli_bench(int argc, char **argv);
/* Live statistics and probes (cli/stat.c, cli/top.c, cli/probe.c). */
int hm_cli_stat(int argc, char **argv);
int hm_cli_top(int argc, char **argv);
int hm_cli_probe(int argc, char **argv);
/* Shared by the commands (cli/stat.c): "1.5G", "12us", "cached", JSON members. */
struct hm_stats;
void hm_cli_bytes(char *out, size_t cap, uint64_t v);
void hm_cli_ns(char *out, size_t cap, uint64_t ns);
const char *hm_cli_mode_name(uint32_t mode);
void hm_cli_json_stats(const struct hm_stats *s);
/* Prints s as a JSON string: quotes, backslashes and control characters escaped. */
void hm_cli_json_str(const char *s);

/* Policy specs on the command line (cli/policy_spec.c). A list owns its strings. */
struct hm_cli_strs {
	char **v;
	size_t n, cap;
};
int hm_cli_strs_add(struct hm_cli_strs *l, char *s); /* 0 or -ENOMEM; takes s */
void hm_cli_strs_free(struct hm_cli_strs *l);         /* and empties it */
/*
 * Splits one --policy argument of `hmmap CMD` into specs and appends them
 * to out: at a comma only where the next token names a policy (in any
 * case) or is `all`, so option commas stay with their policy
 * ("s3fifo:small=0.2,threshold=1,LRU" is two); `all` expands to every
 * policy (with `live`, every one a live cache runs: not opt). A known name
 * is rewritten in its canonical spelling ("LRU" -> "lru"), so that tables
 * report it so; an unknown one is kept for hm_cli_policy_check() to refuse.
 * Returns 0, -EINVAL (an empty list or item, said on stderr) or -ENOMEM.
 */
int hm_cli_policy_split(struct hm_cli_strs *out, const char *cmd, const char *arg, int live);
/*
 * Checks a spec before any run: a known name, options the policy accepts
 * (an instance of one slot is made), and with `live`, a policy that does
 * not need the future. Returns 0, 2 (bad usage: unknown, bad options,
 * replay-only) or 1 (the policy failed otherwise, e.g. out of memory),
 * with hm_errormsg() saying why.
 */
int hm_cli_policy_check(const char *spec, int live);

#endif
