//! The GGUF's `tokenizer.chat_template` (a Hugging Face Jinja template) rendered with minijinja,
//! configured as transformers renders it: trim_blocks and lstrip_blocks, Python string methods
//! (`.strip()`, `.startswith()`, ...), `raise_exception` and `strftime_now`.

use minijinja::{context, Environment, Error as JinjaError, ErrorKind, Value};

use crate::error::{EngineError, EngineResult, ErrorCode};

#[derive(Debug, Clone)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Gemma's turn format (the official template, for GGUFs that carry none): a system message is
/// folded into the first user turn, the assistant is "model".
pub const GEMMA_TEMPLATE: &str = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + (message['content'] | trim) + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

/// ChatML (Qwen and many others).
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Llama 3.
pub const LLAMA3_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + (message['content'] | trim) + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

pub struct ChatTemplate {
    env: Environment<'static>,
    pub source: String,
}

fn raise_exception(message: String) -> Result<Value, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, message))
}

/// Days since 1970-01-01 to (year, month 1..=12, day) (Howard Hinnant's civil_from_days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The few strftime fields chat templates use, in UTC.
fn strftime_now(format: String) -> String {
    const MONTHS: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let secs_of_day = seconds.rem_euclid(86_400);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('B') => out.push_str(MONTHS[(month - 1) as usize]),
            Some('b') => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            Some('H') => out.push_str(&format!("{:02}", secs_of_day / 3600)),
            Some('M') => out.push_str(&format!("{:02}", secs_of_day / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", secs_of_day % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

impl ChatTemplate {
    pub fn new(source: &str) -> EngineResult<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| EngineError::new(ErrorCode::TemplateError, format!("chat template syntax: {e}")))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| EngineError::new(ErrorCode::TemplateError, format!("the GGUF's chat template does not parse: {e}")))?;
        Ok(Self { env, source: source.to_string() })
    }

    pub fn render(&self, messages: &[ChatMessage], bos_token: &str, eos_token: &str, add_generation_prompt: bool) -> EngineResult<String> {
        let template = self.env.get_template("chat").map_err(|e| EngineError::new(ErrorCode::TemplateError, e.to_string()))?;
        let messages: Vec<Value> = messages.iter().map(|m| context! { role => m.role.clone(), content => m.content.clone() }).collect();
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => bos_token,
                eos_token => eos_token,
            })
            .map_err(|e| EngineError::new(ErrorCode::TemplateError, format!("chat template: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_chatml_template_with_python_methods() {
        let source = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'].strip() + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        let template = ChatTemplate::new(source).unwrap();
        let text = template.render(&[ChatMessage { role: "user".into(), content: "  hi  ".into() }], "<s>", "</s>", true).unwrap();
        assert_eq!(text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn the_gemma_fallback_template_renders_turns() {
        let template = ChatTemplate::new(GEMMA_TEMPLATE).unwrap();
        let messages = [ChatMessage { role: "system".into(), content: "Be brief.".into() }, ChatMessage { role: "user".into(), content: " Hi ".into() }];
        let text = template.render(&messages, "<bos>", "<eos>", true).unwrap();
        assert_eq!(text, "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
        let bad = [ChatMessage { role: "assistant".into(), content: "x".into() }];
        assert_eq!(template.render(&bad, "", "", true).unwrap_err().code, ErrorCode::TemplateError);
    }

    #[test]
    fn raise_exception_is_a_template_error() {
        let template = ChatTemplate::new("{{ raise_exception('no system role') }}").unwrap();
        let error = template.render(&[], "", "", true).unwrap_err();
        assert_eq!(error.code, ErrorCode::TemplateError);
        assert!(error.message.contains("no system role"), "{}", error.message);
    }

    #[test]
    fn strftime_now_formats_a_date() {
        let date = strftime_now("%d %b %Y".into());
        assert_eq!(date.len(), 11, "{date}");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}
