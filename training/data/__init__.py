"""Training data: real raw formats (first-class) and resynthesised nights, as model inputs."""
