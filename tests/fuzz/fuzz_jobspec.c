/*
 * fuzz_jobspec.c: libFuzzer target for the strict JSON parser and the job
 * spec validator (ft_jobspec_parse, which includes the train section), the
 * code that judges every spec a user submits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ft/json.h"
#include "ft/jobspec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size); /* libFuzzer calls it */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ft_err_t err = {0};
    cJSON *spec = ft_json_parse((const char *)data, size, &err);
    ft_jobspec_t js;

    if (!spec)
        return 0;
    memset(&js, 0, sizeof(js));
    if (ft_jobspec_parse(spec, &js, &err) < 0 && !err.msg[0])
        abort(); /* every refusal says why */
    ft_jobspec_free(&js);
    cJSON_Delete(spec);
    return 0;
}
