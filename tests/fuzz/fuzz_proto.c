/*
 * fuzz_proto.c: libFuzzer target for the protocol decoder and validator
 * (ft_proto_decode), the first code every byte from a socket reaches. A
 * message that decodes is re-validated after a print/parse round trip: the
 * validator must accept what it accepted.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ft/json.h"
#include "ft/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size); /* libFuzzer calls it */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ft_err_t err = {0};
    ft_msg_type_t type;
    char re[65];
    cJSON *msg = ft_proto_decode(data, size, &type, re, sizeof(re), &err);

    if (msg) {
        char *text = cJSON_PrintUnformatted(msg);
        ft_err_t e2 = {0};
        ft_msg_type_t t2;
        cJSON *again = text ? ft_proto_decode(text, strlen(text), &t2, re, sizeof(re), &e2) : NULL;

        if (text && (!again || t2 != type))
            abort(); /* printed form of a valid message must stay valid */
        cJSON_Delete(again);
        free(text);
        cJSON_Delete(msg);
    } else if (!err.msg[0]) {
        abort(); /* every refusal says why */
    }
    return 0;
}
