//! `ChatMessage`: one message for the chat template.

use napi_derive::napi;

#[napi(object)]
#[derive(Debug, Clone)]
pub struct ChatMessage {
    /// system, user or assistant (whatever the template accepts).
    pub role: String,
    pub content: String,
}

impl From<ChatMessage> for crate::chat_template::ChatMessage {
    fn from(message: ChatMessage) -> Self {
        Self { role: message.role, content: message.content }
    }
}
