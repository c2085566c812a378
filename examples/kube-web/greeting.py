def text() -> str:
    return "hello from kube-web"
