//! How single fields decode when the API writes something odd: `null` for an empty list or
//! object, a timestamp past the representable range. Shared by the slim types, so that such a
//! field never fails a Pod (and with it a whole list).

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::de::Deserializer;
use serde::Deserialize;

/// The API writes `null` for empty lists and objects at times; treat it as absent.
pub(super) fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    deserializer: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A timestamp, clamped to the representable range: RFC 3339 (and Go) allow years up to
/// 9999 in full, jiff stops just short of the end of year 9999 (and of year -9999). A Pod
/// whose kubelet, readiness-gate controller or tenant writes `9999-12-31T23:59:59Z` is read
/// as the last instant there is, instead of failing its decoding (and with it a whole list).
pub(super) fn clamped_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Time>, D::Error> {
    let Some(text) = Option::<Cow<'de, str>>::deserialize(deserializer)? else { return Ok(None) };
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => Ok(Some(Time(t))),
        Err(e) => {
            let year: Option<i32> = text.trim_start_matches('+').split('-').next().and_then(|y| y.parse().ok());
            match year {
                Some(y) if y >= 9999 => Ok(Some(Time(jiff::Timestamp::MAX))),
                _ if text.starts_with("-") => Ok(Some(Time(jiff::Timestamp::MIN))),
                _ => Err(serde::de::Error::custom(format!("invalid timestamp: {e}"))),
            }
        }
    }
}
