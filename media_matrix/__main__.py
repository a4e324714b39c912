from media_matrix.cli import main

main()
