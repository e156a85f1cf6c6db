/*
 * paths.h: file paths from job specs, canonicalised and confined to the
 * roots the operator configured (ftsched's path_roots).
 */
#ifndef FT_PATHS_H
#define FT_PATHS_H

#include <stddef.h>

#include "ft/common.h"

#define FT_ROOTS_MAX 16 /* roots in one path_roots setting */

/* Canonical form of path into out: symlinks resolved (realpath) for the part
 * that exists; a part that does not exist yet (an output directory) may not
 * contain "." or ".." components. Relative paths are refused: the scheduler
 * and the workers do not share a working directory. */
int ft_path_canon(const char *path, char *out, size_t outlen, ft_err_t *err);

/* Canonicalises path (naming it field in errors) and checks that it lies
 * under one of roots, a ':'-separated list of directories (each canonicalised
 * too). out (may be NULL) receives the canonical path. */
int ft_path_check_roots(const char *field, const char *path, const char *roots, char *out,
                        size_t outlen, ft_err_t *err);

#endif
