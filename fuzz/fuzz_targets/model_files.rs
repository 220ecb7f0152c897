//! The two halves of a saved model directory, as `load_model_dir` reads them: the JSON
//! description (parsed, then validated) and the safetensors weights. The first input byte
//! picks which decoder gets the rest.
#![no_main]

use battery_fl_core::model::{params_from_safetensors, params_to_safetensors, ModelDescription};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        if let Ok(d) = serde_json::from_slice::<ModelDescription>(rest) {
            let _ = d.validate();
        }
    } else if let Ok(params) = params_from_safetensors(rest) {
        // what decodes re-encodes and decodes to the same weights
        let bytes = params_to_safetensors(&params).expect("decoded weights encode");
        let again = params_from_safetensors(&bytes).expect("re-encoded weights decode");
        assert_eq!(again.flatten().len(), params.flatten().len());
        assert_eq!(
            again.names().collect::<Vec<_>>(),
            params.names().collect::<Vec<_>>()
        );
    }
});
