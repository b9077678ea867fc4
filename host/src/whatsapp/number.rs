//! Which business number a send goes out from: the key of the customer's window and of the
//! number's pacing.

use super::Via;
use crate::config::WhatsAppConfig;

impl Via {
    /// The business number: `onprem` for the one number of the Coreapp, else the Cloud phone
    /// number id (the notification's, or the configured one).
    pub fn number(&self, config: Option<&WhatsAppConfig>) -> String {
        match self {
            Via::Onprem => "onprem".into(),
            Via::Cloud { phone_number_id } => phone_number_id
                .clone()
                .or_else(|| config?.cloud.as_ref()?.phone_number_id.clone())
                .unwrap_or_else(|| "cloud".into()),
        }
    }
}
