//! The built-in probes. Each one is reached through a constructor on [`Check`](crate::Check).

#[cfg(feature = "http-check")]
mod http;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod tcp;

use crate::error::Error;

/// Validates `host:port` and returns it unchanged.
pub(crate) fn validate_address(name: &str, address: &str) -> Result<String, Error> {
    let invalid = |reason| Error::InvalidAddress {
        name: name.to_owned(),
        address: address.to_owned(),
        reason,
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(|| invalid("no port"))?;
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid("the port is not a number from 1 to 65535")),
        Ok(_) => Ok(address.to_owned()),
    }
}
