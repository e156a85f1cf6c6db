/*
 * fuzz_keys.c: libFuzzer target for the keys file parser (ft_keys_parse):
 * any text either loads into a table where every key is found again, or is
 * refused with a message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ft/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size); /* libFuzzer calls it */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    ft_keys_t k;
    ft_err_t err = {0};

    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (ft_keys_parse(&k, text, "fuzz", &err) == 0) {
        for (size_t i = 0; i < k.n; i++)
            if (ft_keys_find(&k, k.ids[i].pub) != &k.ids[i])
                abort();
        ft_keys_free(&k);
    } else if (!err.msg[0]) {
        abort();
    }
    free(text);
    return 0;
}
