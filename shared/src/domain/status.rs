//! The canonical status model: one set wide enough for every provider, with the
//! provider's exact code kept as a sub-status.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Canonical shipment status (compare AfterShip tags / 17TRACK main statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Status {
    /// Registered, no answer from any provider yet.
    Pending,
    /// The carrier knows the waybill but has not scanned the parcel.
    InfoReceived,
    PickedUp,
    InTransit,
    ArrivedAtDestinationCity,
    OutForDelivery,
    /// In a locker or a pickup station, waiting for the buyer.
    AvailableForPickup,
    Delivered,
    DeliveryFailed,
    Exception,
    Returning,
    Returned,
    /// No information for too long; tracking stopped.
    Expired,
}

impl Status {
    pub const ALL: [Status; 13] = [
        Status::Pending,
        Status::InfoReceived,
        Status::PickedUp,
        Status::InTransit,
        Status::ArrivedAtDestinationCity,
        Status::OutForDelivery,
        Status::AvailableForPickup,
        Status::Delivered,
        Status::DeliveryFailed,
        Status::Exception,
        Status::Returning,
        Status::Returned,
        Status::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "Pending",
            Status::InfoReceived => "InfoReceived",
            Status::PickedUp => "PickedUp",
            Status::InTransit => "InTransit",
            Status::ArrivedAtDestinationCity => "ArrivedAtDestinationCity",
            Status::OutForDelivery => "OutForDelivery",
            Status::AvailableForPickup => "AvailableForPickup",
            Status::Delivered => "Delivered",
            Status::DeliveryFailed => "DeliveryFailed",
            Status::Exception => "Exception",
            Status::Returning => "Returning",
            Status::Returned => "Returned",
            Status::Expired => "Expired",
        }
    }

    /// No more checks after a terminal status.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Delivered | Status::Returned | Status::Expired)
    }

    /// Does a buyer want to hear that the parcel has reached this status?
    pub fn is_buyer_facing(self) -> bool {
        !matches!(
            self,
            Status::Pending | Status::InfoReceived | Status::Expired
        )
    }

    /// Progress along the forward journey. Used to refuse a regression when a
    /// provider answers with no newer trace line than we already hold.
    /// Side states (exceptions) share the rank of "somewhere in transit".
    pub fn progress(self) -> u8 {
        match self {
            Status::Pending => 0,
            Status::InfoReceived => 1,
            Status::PickedUp => 2,
            Status::InTransit | Status::Exception => 3,
            Status::ArrivedAtDestinationCity => 4,
            Status::OutForDelivery | Status::DeliveryFailed => 5,
            Status::AvailableForPickup => 6,
            Status::Returning => 7,
            Status::Delivered | Status::Returned | Status::Expired => 9,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status `{0}`")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// The provider's exact code behind a canonical status, e.g. Kdniao StateEx `412`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubStatus {
    /// Provider vocabulary the code belongs to (`kdniao`, `kuaidi100`, `taobao`).
    pub provider: String,
    /// The code exactly as the provider sent it.
    pub code: String,
}

impl SubStatus {
    pub fn new(provider: impl Into<String>, code: impl Into<String>) -> Self {
        SubStatus {
            provider: provider.into(),
            code: code.into(),
        }
    }
}

impl fmt::Display for SubStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.code)
    }
}

impl FromStr for SubStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((p, c)) if !p.is_empty() && !c.is_empty() => Ok(SubStatus::new(p, c)),
            _ => Err(UnknownStatus(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_name() {
        for st in Status::ALL {
            assert_eq!(st.as_str().parse::<Status>(), Ok(st));
        }
        assert!("Shipped".parse::<Status>().is_err());
    }

    #[test]
    fn terminal_statuses_are_exactly_the_final_ones() {
        let terminal: Vec<_> = Status::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            vec![Status::Delivered, Status::Returned, Status::Expired]
        );
    }

    #[test]
    fn sub_status_keeps_provider_and_code() {
        let s: SubStatus = "kdniao:412".parse().unwrap();
        assert_eq!(s, SubStatus::new("kdniao", "412"));
        assert_eq!(s.to_string(), "kdniao:412");
        assert!("412".parse::<SubStatus>().is_err());
    }
}
