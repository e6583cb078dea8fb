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

#endif
