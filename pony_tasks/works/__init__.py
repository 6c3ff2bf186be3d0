"""Works: the same picture across posts and sites (issue 15). ``candidates`` finds pairs cheaply, ``decide`` judges
each pair from more than one signal, ``link`` groups images into works and keeps them stable across runs."""
