/*
 * errors.c: stable error-code names (they travel on the wire) and the
 * caller-owned ft_err_t that carries a code plus a message for people.
 *
 * Invariant: ft_err_names has exactly one row per ft_errcode_t, in enum order,
 * so lookups by code are O(1) and by name O(number of codes).
 */
#include <stdio.h>
#include <string.h>

#include "ft/common.h"

/* Index = ft_errcode_t; never reorder (names are part of the protocol). */
static const char *const ft_err_names[FT_ERR__COUNT] = {
    [FT_OK] = "ok",
    [FT_EBADJSON] = "bad_json",
    [FT_EVERSION] = "bad_version",
    [FT_EUNKNOWNTYPE] = "unknown_type",
    [FT_EMISSING] = "missing_field",
    [FT_EBADFIELD] = "bad_field",
    [FT_ETOOLARGE] = "too_large",
    [FT_ENOTFOUND] = "not_found",
    [FT_EUNSAT] = "unsatisfiable",
    [FT_EFORBIDDEN] = "forbidden",
    [FT_ESTATE] = "bad_state",
    [FT_EUNAVAIL] = "unavailable",
    [FT_ENOTREG] = "not_registered",
    [FT_EINTERNAL] = "internal",
};

const char *ft_errcode_name(ft_errcode_t code)
{
    if ((int)code < 0 || code >= FT_ERR__COUNT || !ft_err_names[code])
        return "internal";
    return ft_err_names[code];
}

ft_errcode_t ft_errcode_from_name(const char *name)
{
    if (!name)
        return FT_ERR__COUNT;
    for (int i = 0; i < FT_ERR__COUNT; i++)
        if (ft_err_names[i] && strcmp(ft_err_names[i], name) == 0)
            return (ft_errcode_t)i;
    return FT_ERR__COUNT;
}

void ft_err_set(ft_err_t *err, ft_errcode_t code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

void ft_err_clear(ft_err_t *err)
{
    if (!err)
        return;
    err->code = FT_OK;
    err->msg[0] = '\0';
}
