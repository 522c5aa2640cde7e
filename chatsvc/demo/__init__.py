"""The demo help center that `chatsvc serve --demo` loads."""
