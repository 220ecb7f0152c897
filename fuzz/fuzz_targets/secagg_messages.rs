//! Every SecAgg message decoder on untrusted bytes: decoding never panics, and whatever
//! decodes re-encodes to bytes that decode to the same encoding.
#![no_main]

use battery_fl_core::secagg::{
    AdvertiseKeys, ConsistencyCheck, ConsistencySignature, ForwardedShares, KeyDirectory,
    MaskedInput, Setup, ShareKeys, UnmaskRequest, UnmaskResponse,
};
use libfuzzer_sys::fuzz_target;

macro_rules! check {
    ($data:expr, $($ty:ty),*) => {$(
        if let Ok(m) = <$ty>::from_bytes($data) {
            let bytes = m.to_bytes();
            let again = <$ty>::from_bytes(&bytes).expect("re-encoded message decodes");
            assert_eq!(again.to_bytes(), bytes, "{} round trip", stringify!($ty));
        }
    )*};
}

fuzz_target!(|data: &[u8]| {
    check!(
        data,
        Setup,
        AdvertiseKeys,
        KeyDirectory,
        ShareKeys,
        ForwardedShares,
        MaskedInput,
        UnmaskRequest,
        ConsistencyCheck,
        ConsistencySignature,
        UnmaskResponse
    );
});
