"""`python -m speechlstm`: the command line (speechlstm.cli)."""

from speechlstm.cli.main import main

if __name__ == "__main__":
    main()
