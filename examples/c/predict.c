/* Predict the cycle life of a real battery cell with a saved BatLiNet model, from C.
 *
 *   predict <model-dir> <target-cell.json.gz> <reference-cell.json.gz>...
 *
 * Loads the target cell (a MATR cell: discharge curves of cycles 2..100), featurizes it
 * with the model's own settings, loads the model, predicts its cycle life against the
 * labelled reference cells and prints the result next to the recorded life. */
#include <stdio.h>
#include <stdlib.h>

#include "battery_fl.h"

/* Print the library's message for a failed call and leave. */
static int fail(const char *what, bfl_status status) {
    char msg[1024];
    bfl_last_error_message(msg, sizeof msg);
    fprintf(stderr, "%s failed: %s (%d): %s\n", what, bfl_status_str((int)status), (int)status, msg);
    return 1;
}

#define TRY(call)                                 \
    do {                                          \
        bfl_status status_ = (call);              \
        if (status_ != BFL_STATUS_OK) {           \
            rc = fail(#call, status_);            \
            goto done;                            \
        }                                         \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s <model-dir> <target-cell> <reference-cell>...\n", argv[0]);
        return 2;
    }
    int rc = 0;
    size_t n_refs = (size_t)(argc - 3);
    bfl_model *model = NULL;
    bfl_featurizer *featurizer = NULL;
    bfl_cell *target = NULL;
    bfl_cell **refs = calloc(n_refs, sizeof *refs);
    bfl_dataset *targets = NULL, *references = NULL;
    float *features = NULL;

    printf("battery_fl %s\n", bfl_version());

    /* 1. the target cell, cleaned and checked */
    TRY(bfl_cell_load_json(argv[2], &target));
    TRY(bfl_cell_clean(target, NULL));
    TRY(bfl_cell_validate(target));
    char id[256];
    size_t n_cycles = 0;
    uint32_t recorded = 0;
    TRY(bfl_cell_id(target, id, sizeof id, NULL));
    TRY(bfl_cell_num_cycles(target, &n_cycles));
    TRY(bfl_cell_cycle_life(target, &recorded));
    printf("cell %s: %zu cycles\n", id, n_cycles);

    /* 2. the model, and its features of the cell */
    TRY(bfl_model_load(argv[1], &model));
    TRY(bfl_model_featurizer_new(model, &featurizer));
    size_t shape[3], len = 0;
    TRY(bfl_featurizer_output_shape(featurizer, shape));
    TRY(bfl_featurizer_output_len(featurizer, &len));
    features = malloc(len * sizeof *features);
    TRY(bfl_featurizer_transform(featurizer, target, features, len, NULL));
    /* channel 1 is V(Qd): the discharge voltage over normalized capacity */
    bfl_featurizer_config cfg;
    TRY(bfl_featurizer_get_config(featurizer, &cfg));
    const float *vqd = features + shape[1] * shape[2];
    size_t mid = shape[2] / 2, last = shape[1] - 1;
    double q = cfg.q_min + (double)mid * (cfg.q_max - cfg.q_min) / (double)(shape[2] - 1);
    printf("features: %zu channels x %zu cycles x %zu points; V(Qd) at Q/Qnom = %.3f: "
           "%.4f V (cycle %u), %.4f V (cycle %u)\n",
           shape[0], shape[1], shape[2], q, vqd[mid], cfg.first_cycle,
           vqd[last * shape[2] + mid], cfg.first_cycle + (unsigned)last);

    /* 3. the labelled reference cells */
    for (size_t i = 0; i < n_refs; i++) {
        TRY(bfl_cell_load_json(argv[3 + i], &refs[i]));
        TRY(bfl_cell_clean(refs[i], NULL));
    }
    TRY(bfl_model_dataset_new(model, (const bfl_cell *const *)&target, 1, &targets));
    TRY(bfl_model_dataset_new(model, (const bfl_cell *const *)refs, n_refs, &references));

    /* 4. predict */
    double life = 0;
    TRY(bfl_model_predict(model, targets, references, &life, 1, NULL));
    printf("predicted cycle life: %.0f cycles (recorded: %u) with %zu reference cells\n", life,
           recorded, n_refs);

done:
    free(features);
    bfl_dataset_free(targets);
    bfl_dataset_free(references);
    for (size_t i = 0; i < n_refs; i++) bfl_cell_free(refs[i]);
    free(refs);
    bfl_cell_free(target);
    bfl_featurizer_free(featurizer);
    bfl_model_free(model);
    return rc;
}
